"""What keyed models cost in memory and time per event, by number of keys (issue #14).

    python bench/keys.py [--events 60000] [--keys 1000,10000,100000] [--cache 10000]
                         [--store memory|disk] [--json F]

In process, no Kafka: the keyed core (:class:`stream_app.core.keyed.KeyedModels`) answers and
learns a seeded stream whose model key is drawn from ``--keys`` keys with a Zipf distribution
(exponent ``--zipf``: a few keys are hot, most are rare), 15 numeric features and a label per
event, with the shipped defaults (guard on, drift policy ``challenger``, logistic regression).

The keyed-models topic is stood for by what a worker holds of it: a
:class:`~stream_app.registry.keyed.KeyIndex` (version numbers, and the encoded values of each
key's two newest versions) kept where ``--store`` says (``model.key_store``: ``memory``, or
``disk``: RocksDB in a temporary directory). As a worker that has read its partitions on
assignment, it starts with two stored versions of every one of the ``--keys`` keys (a learner
trained on 200 events, ~2.6 KB each); a key is loaded from its newest (checksum, safe unpickler)
when its first event comes. Keys beyond ``--cache`` (``model.key_cache``) are evicted least
recently used first: a dirty one is written back as a new version (the real encoding), and
``registry.keep_last`` tombstones apply.

Prints one row per key count: us/event, peak RSS (resident memory of this process, MB), keys held
decoded, write-backs and loads per 1,000 events, and the stored bytes per value. Run one process
per ``--store`` to compare them (peak RSS is a high-water mark). Measure on a quiet machine: the
us/event figures move with load; RSS does not.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_app.core.example import LabeledExample
from stream_app.core.keyed import KeyedModels, KeyState
from stream_app.core.learn import Learner
from stream_app.registry.keyed import (
    VALUES_KEPT,
    KeyIndex,
    decode_version,
    encode_version,
    record_key,
    tombstones,
)
from stream_app.settings import Settings
from stream_app.settings.learning import KEY_STORES
from stream_app.worker.key_disk import DiskValues

FEATURES = 15
Row = tuple[str, dict[str, Any], bool]


class Store:
    """What a worker holds of the keyed-models topic: an index, its values in memory or on disk."""

    def __init__(self, settings: Settings, kind: str, directory: Path) -> None:
        self.settings = settings
        self.disk = DiskValues(directory / "keyed") if kind == "disk" else None
        self.index = KeyIndex(values=self.disk.partition(0) if self.disk else None)
        self.writes = 0
        self.loads = 0
        self.bytes = 0

    def preload(self, keys: int) -> None:
        """Hold two versions of every key, as read from the topic on assignment."""
        _, value = encode_version(self.settings, "template", 0, trained(self.settings), "", 0.0)
        header, blob = value.split(b"\n", 1)
        fields = orjson.loads(header)
        for k in range(keys):
            for version in range(VALUES_KEPT):
                key = f"user-{k}"
                fields.update(key=key, version=version)
                self.index.apply(record_key(key, version), orjson.dumps(fields) + b"\n" + blob)
        self.bytes = len(value)

    def load(self, key: str) -> Learner | None:
        value = self.index.value(key)
        if value is None:
            return None
        self.loads += 1
        return decode_version(self.settings, value)[1]

    def write_back(self, key: str, state: KeyState) -> None:
        self.writes += 1
        version = (self.index.versions(key) or [-1])[-1] + 1
        record, value = encode_version(self.settings, key, version, state.learner, "evicted", 0.0)
        self.index.apply(record, value)
        for doomed in tombstones(self.index, key, self.settings.registry.keep_last):
            self.index.apply(doomed, None)

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()


def trained(settings: Settings, events: int = 200) -> Learner:
    """A learner that has learned ``events`` seeded events (the stored state's typical size)."""
    learner = Learner(settings)
    for i, (_, x, y) in enumerate(stream(1, 1.0, events, seed=1)):
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"t{i}", x, y, served, shadow, 0.0))
    return learner


def zipf_keys(keys: int, exponent: float, events: int, rng: random.Random) -> list[str]:
    """Draw ``events`` key names from ``keys`` keys, P(rank r) proportional to 1 / r**exponent."""
    cumulative = list(itertools.accumulate(1.0 / (r**exponent) for r in range(1, keys + 1)))
    total = cumulative[-1]
    return [f"user-{bisect.bisect(cumulative, rng.random() * total)}" for _ in range(events)]


def stream(
    keys: int, exponent: float, events: int, seed: int
) -> list[tuple[str, dict[str, Any], bool]]:
    """A seeded keyed stream: each key has its own hidden weights, so its own concept."""
    rng = random.Random(seed)
    weights: dict[str, list[float]] = {}
    rows = []
    for key in zipf_keys(keys, exponent, events, rng):
        w = weights.setdefault(key, [rng.gauss(0, 1) for _ in range(FEATURES)])
        x = {f"f{i}": rng.gauss(0, 1) for i in range(FEATURES)}
        rows.append((key, x, sum(wi * xi for wi, xi in zip(w, x.values(), strict=True)) > 0))
    return rows


def rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(keys: int, cache: int, rows: list[Row], kind: str) -> dict[str, Any]:
    """Answer and learn every row through a fresh KeyedModels; return the row's figures."""
    settings = Settings().replace(model={"key_cache": cache, "key_min_examples": 0})
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as directory:
        store = Store(settings, kind, Path(directory))
        try:
            return measure(keys, cache, rows, store, settings)
        finally:
            store.close()


def measure(
    keys: int, cache: int, rows: list[Row], store: Store, settings: Settings
) -> dict[str, Any]:
    """Preload ``store``, then time every row through a fresh KeyedModels."""
    store.preload(keys)
    models = KeyedModels(settings, store.load, store.write_back)
    gc.collect()
    started = time.perf_counter()
    for i, (key, x, y) in enumerate(rows):
        now = float(i)
        answer = models.answer(key, x, 0, now, None)
        learner = models.get(key, 0, now).learner
        example = LabeledExample(f"e{i}", x, y, answer.served, answer.shadow, now)
        if learner.learn(example).learned:
            models.learned(key)
    elapsed = time.perf_counter() - started
    per_1k = 1000 / len(rows)
    return {
        "keys": keys,
        "store": "disk" if store.disk else "memory",
        "cache": cache,
        "us_per_event": round(elapsed / len(rows) * 1e6, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "held": len(models),
        "distinct": len({key for key, _, _ in rows}),
        "writes_per_1k": round(store.writes * per_1k, 1),
        "loads_per_1k": round(store.loads * per_1k, 1),
        "stored_bytes_per_value": store.bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--keys", default="1000,10000,100000")
    parser.add_argument("--cache", type=int, default=Settings().model.key_cache)
    parser.add_argument("--store", choices=KEY_STORES, default=Settings().model.key_store)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(
        f"{args.events} events, 15 numeric features, shipped defaults (guard, drift challenger, "
        f"logistic regression), Zipf {args.zipf} over the keys; model.key_cache {args.cache} "
        f"(default {Settings().model.key_cache}); model.key_store {args.store}"
    )
    header = f"{'keys':>7} {'distinct':>8} {'held':>6} {'us/ev':>7} {'peak RSS MB':>11} "
    print(header + f"{'writes/1k':>9} {'loads/1k':>8} {'bytes/value':>11}")
    rows_out = []
    for keys in (int(k) for k in args.keys.split(",")):
        row = run(keys, args.cache, stream(keys, args.zipf, args.events, args.seed), args.store)
        rows_out.append(row)
        print(
            f"{row['keys']:>7} {row['distinct']:>8} {row['held']:>6} {row['us_per_event']:>7} "
            f"{row['peak_rss_mb']:>11} {row['writes_per_1k']:>9} {row['loads_per_1k']:>8} "
            f"{row['stored_bytes_per_value']:>11}"
        )
    print("peak RSS is the process's high-water mark: each row includes the rows above it")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows_out, "args": vars(args) | {"json": str(args.json)}})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
