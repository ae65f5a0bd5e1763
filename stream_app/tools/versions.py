"""``stream-app models``: list, show, export and rebuild model versions, for a person at a terminal.

What the command prints and writes; what it reads (the registry, through Kafka) and the operations
it asks of the writer live in :mod:`stream_app.worker.operations`, and for keyed models (``--key``,
``models keys``) in :mod:`stream_app.worker.key_ops`. No worker address is needed, only the broker.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson

from stream_app.errors import StreamAppError
from stream_app.settings import Settings
from stream_app.worker.operations import log_offsets, read_registry, run, version_table

__all__ = ["export_to", "keyed", "list_versions", "rebuild_to", "show_version"]


def list_versions(settings: Settings, name: str, *, as_json: bool) -> int:
    """Print the stored versions of model ``name``: a table for people, or JSON for machines."""
    rows = version_table(run(read_registry(settings)), name)
    if as_json:
        print(orjson.dumps(rows).decode())
    else:
        _print_versions(name, rows)
    return 0


def show_version(settings: Settings, name: str, version: int) -> int:
    """Print one version's record (no blob) and the learning-log offsets it learned through."""
    registry = run(read_registry(settings))
    record = registry.record(name, version)
    if record is None:
        print(f"stream-app: {name} v{version} is not stored", file=sys.stderr)
        return 1
    shown = {**record.summary(), "log_offsets": log_offsets(registry, record)}
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    return 0


def rebuild_to(settings: Settings, name: str, version: int, out: Path) -> int:
    """Rebuild ``version`` from an older one and the learning log; write it as an artifact file."""
    from stream_app.registry.replay import rebuild_learner
    from stream_app.registry.transfer import artifact_of

    registry = run(read_registry(settings))
    learner, base = run(rebuild_learner(settings, registry, name, version))
    record = registry.record(name, version)
    assert record is not None  # rebuild_learner refuses a version that is not stored
    shadow = record.status == "shadow" and learner.challenger is not None
    model = learner.challenger.model if shadow and learner.challenger else learner.serving.model
    data = artifact_of(model, record.summary(), signing_key=settings.registry.signing_key)
    out.write_bytes(data)
    start = "a fresh model" if base is None else f"v{base.version}"
    print(f"rebuilt {name} v{version} from {start} and the learning log: {out}")
    return 0


def export_to(settings: Settings, name: str, version: int, out: Path) -> int:
    """Write a stored version as an artifact file (:mod:`stream_app.artifact`)."""
    from stream_app.registry.transfer import export_version

    registry = run(read_registry(settings))
    signing_key = settings.registry.signing_key
    out.write_bytes(export_version(registry, name, version, signing_key))
    print(f"wrote {name} v{version} to {out}")
    return 0


def keyed(settings: Settings, op: str, key: str | None, options: dict[str, Any]) -> int:
    """``models keys`` and ``models show|rollback|reset|export --key K``: see ``key_ops``.

    ``keys``, ``show`` and ``export`` read ``<app id>-keyed-models``, so they reflect each key's
    last checkpoint; ``rollback`` and ``reset`` are carried out by the key's owner at once.
    """
    from stream_app.registry.keyed import TOP_KEYS, key_summary
    from stream_app.worker import key_ops

    version = options.get("version")
    if op == "keys":
        rows = run(key_ops.list_keys(settings))
        summary = key_summary(rows, options.get("top") or TOP_KEYS)
        if options.get("json"):
            print(orjson.dumps({**summary, "rows": rows}).decode())
        else:
            _print_keys(summary)
        return 0
    assert key is not None
    if op == "show":
        home, index = run(key_ops.key_versions(settings, key))
        header = key_ops.version_header(index, key, version)
        shown = {**header, "partition": home, "versions": index.versions(key)}
        print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        return 0
    if op == "export":
        made, data = run(key_ops.export_key(settings, key, version))
        options["out"].write_bytes(data)
        print(f"wrote {settings.model.name} key {key} v{made} to {options['out']}")
        return 0
    if op not in ("rollback", "reset"):
        raise StreamAppError(f"models {op} does not take --key")
    answer = run(key_ops.run_key_command(settings, op, key, version))
    print(orjson.dumps(answer).decode())
    return 0 if answer.get("ok") else 1


def _print_keys(summary: dict[str, Any]) -> None:
    """Print the count of keys and the two short lists for people."""
    print(f"{summary['keys']} keys stored (as of each key's last checkpoint)")
    for title, rows in (
        ("most examples learned", summary["top_by_examples"]),
        ("worst rolling quality", summary["worst_by_quality"]),
    ):
        print(f"\n{title}:\n{'key':24}  {'version':>7}  {'examples':>9}  {'quality':>16}")
        for row in rows:
            q = row["quality"]
            quality = "-" if q.get("value") is None else f"{q['metric']} {q['value']:.4f}"
            print(
                f"{row['key']:24}  {row['version']:>7}  {row['examples_learned']:>9}  {quality:>16}"
            )


def _print_versions(name: str, rows: list[dict[str, Any]]) -> None:
    """Print a table of versions for people."""
    print(
        f"{'version':>7}  {'created (UTC)':19}  {'examples':>9}  {'quality':>16}  "
        f"{'reason':14}  {'status':8}  {'size':>9}  {'features':>8}  factory"
    )
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["created_at"]))
        q = row["quality"]
        quality = "-" if q.get("value") is None else f"{q['metric']} {q['value']:.4f}"
        mark = " *" if row["serves"] else (" p" if row["pinned"] else "")
        features = "-" if row.get("features") is None else row["features"]
        print(
            f"{row['version']:>7}  {created:19}  {row['examples_learned']:>9}  {quality:>16}  "
            f"{row['reason']:14}  {row['status']:8}  {row['size']:>9}  {features:>8}  "
            f"{row['factory'] or '(not recorded)'}{mark}"
        )
    if not rows:
        print(f"(no stored versions of model {name})")
