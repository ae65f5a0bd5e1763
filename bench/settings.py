"""Settings: the hand-written loader against pydantic-settings, on what the worker pays for them.

    python bench/settings.py [--runs 15] [--loads 300] [--reads 1000000] [--json]

Issue #18 asks whether pydantic-settings (TOML + env layering, constraints, a JSON schema) should
replace ``stream_app.settings.layers``, on the condition that start-up and hot-path reads stay the
same. Three figures, each both ways:

- import: a fresh interpreter imports ``stream_app.settings`` (median of ``--runs``); for
  pydantic-settings, the time to import pydantic-settings and build the same sections as pydantic
  models from the dataclasses (field names, types, defaults), after ``stream_app.settings`` is in:
  what a pydantic ``stream_app/settings/`` would cost to import;
- load: one ``load_settings()`` over ``config/default.toml`` and three environment variables
  (median µs of ``--loads``); pydantic-settings reads the same file and variables through
  ``TomlConfigSettingsSource`` and its nested ``__`` env source, for every section;
- read: ``settings.guard.enabled`` as the learner reads it per example (ns per read, best of 5).

The pydantic model checks types only (no per-field constraints, no short env names), so its figures
are a floor for what a full port would cost. Asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
import timeit
import typing
from typing import Any

from stream_app.settings import DEFAULT_CONFIG_FILE, load_settings
from stream_app.tools.settings import ToolSettings

ENV = {
    "STREAM_APP_SERVE__LINGER_MS": "0",
    "STREAM_APP_GUARD__WARMUP": "100",
    "STREAM_APP_TOPICS__PARTITIONS": "8",
}

_IMPORT_DATACLASSES = """
import time
t = time.perf_counter()
import stream_app.settings
print(time.perf_counter() - t)
"""

_IMPORT_PYDANTIC = """
import time
import bench.settings as b
t = time.perf_counter()
b.pydantic_tree()
print(time.perf_counter() - t)
"""


def pydantic_tree() -> type[Any]:
    """Return a pydantic-settings twin of :class:`ToolSettings` (every section, every field)."""
    import pydantic
    from pydantic_settings import (
        BaseSettings,
        PydanticBaseSettingsSource,
        SettingsConfigDict,
        TomlConfigSettingsSource,
    )

    frozen = pydantic.ConfigDict(frozen=True, extra="forbid")
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(ToolSettings):
        cls = typing.get_type_hints(ToolSettings)[section.name]
        hints = typing.get_type_hints(cls)
        fields: dict[str, Any] = {
            f.name: (
                hints[f.name],
                f.default if f.default is not dataclasses.MISSING else f.default_factory(),
            )
            for f in dataclasses.fields(cls)
        }
        model = pydantic.create_model(cls.__name__, __config__=frozen, **fields)
        sections[section.name] = (model, model())

    class Root(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix="STREAM_APP_",
            env_nested_delimiter="__",
            frozen=True,
            extra="forbid",
            toml_file=DEFAULT_CONFIG_FILE,
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    return pydantic.create_model("PydanticSettings", __base__=Root, **sections)


def import_seconds(code: str, runs: int) -> float:
    """Median wall time of ``code``'s timed import, each run in a fresh interpreter."""
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        )
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def load_micros(load: Any, loads: int) -> float:
    """Median µs of one ``load()``."""
    times = []
    for _ in range(loads):
        t = time.perf_counter()
        load()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def read_nanos(settings: Any, reads: int) -> float:
    """Best-of-5 ns of one ``settings.guard.enabled``, as a loop on the hot path reads it."""
    timer = timeit.Timer("s.guard.enabled", globals={"s": settings})
    return min(timer.repeat(repeat=5, number=reads)) / reads * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per import")
    parser.add_argument("--loads", type=int, default=300, help="loads timed in-process")
    parser.add_argument("--reads", type=int, default=1_000_000, help="attribute reads per repeat")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    import os

    os.environ.update(ENV)  # pydantic-settings reads os.environ; load_settings is given the same
    tree = pydantic_tree()
    ours, theirs = load_settings(env=ENV), tree()
    assert (ours.serve.linger_ms, ours.guard.warmup) == (theirs.serve.linger_ms, 100)
    rows = {
        "dataclasses (stream_app.settings)": {
            "import_ms": import_seconds(_IMPORT_DATACLASSES, args.runs) * 1e3,
            "load_us": load_micros(lambda: load_settings(env=ENV), args.loads),
            "read_ns": read_nanos(ours, args.reads),
        },
        "pydantic-settings (same sections)": {
            "import_ms": import_seconds(_IMPORT_PYDANTIC, args.runs) * 1e3,
            "load_us": load_micros(tree, args.loads),
            "read_ns": read_nanos(theirs, args.reads),
        },
    }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'':36}{'import (ms)':>12}{'load (µs)':>12}{'read (ns)':>12}")
    for name, row in rows.items():
        print(f"{name:36}{row['import_ms']:>12.1f}{row['load_us']:>12.0f}{row['read_ns']:>12.1f}")


if __name__ == "__main__":
    main()
