"""Offline scoring: ``stream-app score`` answers a file as the stored version it names would."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream_app.core.predict import predict_one
from stream_app.registry.checkpoint import load_model
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import produce, read_registry, wait_for
from tests.integration.test_learning import feature_messages, sea

CONFIG = "[guard]\nenabled = false\n[registry]\ncheckpoint_every_examples = 400\n"


async def test_score_a_csv_with_an_older_version_matches_that_version(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(partitions=1, extra_config=CONFIG)
    worker.wait_healthy()
    messages = feature_messages(sea(1600, 71), inline=True)
    for stored in (1, 2):  # a checkpoint comes after a fetched batch: send two rounds, get two
        await produce(
            kafka.bootstrap, names.topics["features"], messages[800 * (stored - 1) :][:800]
        )

        async def versions(n: int = stored) -> object:
            registry = await read_registry(kafka.bootstrap, names.app_id)
            return registry if len(registry.versions("default")) >= n else None

        registry = await wait_for(versions, what=f"{stored} checkpoint(s)")
    older = registry.versions("default")[0]
    model = load_model(registry, "default", older.version).model

    probe = sea(700, 72)  # more than one batch's many_min_rows: the vectorised path is used
    source = tmp_path / "probe.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *probe[0][0], "label"])
        for i, (x, y) in enumerate(probe):
            writer.writerow([f"s-{i}", *x.values(), int(y)])
        writer.writerow(["s-text", "not a number", "", "", "1"])  # a string feature is fine...
        writer.writerow(["s-inf", "1e999", "1", "1", "1"])  # ...one too big for JSON is not...
        writer.writerow(["s-short", "1"])  # ...nor a row that does not fit the header
    out = tmp_path / "scored.jsonl"
    cli = subprocess.run(
        [sys.executable, "-m", "stream_app", "score", str(source), "--version",
         str(older.version), "--out", str(out)],
        env=worker.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert f"with default v{older.version}" in cli.stdout and "accuracy" in cli.stdout
    assert "left out 2: invalid_features 1, unreadable line" in cli.stdout, cli.stdout

    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    scored = {line["id"]: line for line in lines}
    assert len(lines) == len(probe) + 1 and "s-text" in scored
    for i, (x, y) in enumerate(probe):
        line, expected = scored[f"s-{i}"], predict_one(model, x)
        assert line["model_version"] == older.version and line["label"] == int(y)
        assert line["prediction"] == expected.prediction
        assert line["proba"] == pytest.approx(expected.proba, abs=1e-12)


async def test_score_without_stored_versions_says_so(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(partitions=1)
    worker.wait_healthy()
    source = tmp_path / "one.jsonl"
    source.write_bytes(b'{"id": "a", "features": {"x": 1.0}}\n')
    cli = subprocess.run(
        [sys.executable, "-m", "stream_app", "score", str(source), "--out", str(tmp_path / "o")],
        env=worker.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 1
    assert "has no stored version" in cli.stderr
