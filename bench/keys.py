"""What keyed models cost in memory and time per event, by number of keys (issue #14).

    python bench/keys.py [--events 60000] [--keys 1000,10000,100000] [--cache 10000] [--json F]
                         [--store memory|disk] [--mode event|batch] [--batch 1000]
                         [--min-rows 500] [--min-examples 0]

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

``--mode batch`` answers micro-batches of ``--batch`` events (``inference.max_batch``) the way
``inference.mode = "batch"`` does (:meth:`~stream_app.core.keyed.KeyedModels.answer_many`: one
call per key, vectorised for a key with ``--min-rows``, ``inference.many_min_rows``, events in
the batch), then learns them in order; ``event`` (the default) answers and learns event by event.
``--min-examples N`` (``model.key_min_examples``; default 0) lets a global model answer the keys
younger than that (``model.key_fallback = "global"``, which learns every label).

Prints one row per key count: us/event, peak RSS (resident memory of this process, MB), keys held
decoded, write-backs and loads per 1,000 events, and the stored bytes per value; ``cpu us/ev``
is this process's CPU time per event, steadier than the wall clock on a shared machine, and
``answer cpu`` the part of it spent answering (what batch inference changes). Run one process
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
from stream_app.core.predict import NO_ANSWER
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


def run(
    keys: int,
    cache: int,
    rows: list[Row],
    kind: str,
    mode: str,
    batch: int,
    min_rows: int,
    min_examples: int = 0,
) -> dict[str, Any]:
    """Answer and learn every row through a fresh KeyedModels; return the row's figures."""
    settings = Settings().replace(
        model={"key_cache": cache, "key_min_examples": min_examples},
        inference={"mode": mode, "max_batch": batch, "many_min_rows": min_rows},
    )
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as directory:
        store = Store(settings, kind, Path(directory))
        try:
            return measure(keys, rows, store, settings, min_examples)
        finally:
            store.close()


def measure(
    keys: int, rows: list[Row], store: Store, settings: Settings, min_examples: int
) -> dict[str, Any]:
    """Preload ``store``, then time every row through a fresh KeyedModels."""
    store.preload(keys)
    inference = settings.inference
    mode, batch, cache = inference.mode, inference.max_batch, settings.model.key_cache
    models = KeyedModels(settings, store.load, store.write_back)
    size = batch if mode == "batch" else 1
    fallback = Learner(settings) if min_examples else None  # the global model: learns every label
    gc.collect()
    answering = 0.0  # CPU time spent answering (the part batch inference changes)
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(rows), size):
        now = float(start)
        chunk = rows[start : start + size]
        asked = time.process_time()
        if mode == "batch":
            answers = models.answer_many([(key, x, 0) for key, x, _ in chunk], now, fallback)
        else:
            answers = [models.answer(key, x, 0, now, fallback) for key, x, _ in chunk]
        answering += time.process_time() - asked
        for i, ((key, x, y), answer) in enumerate(zip(chunk, answers, strict=True), start):
            assert not isinstance(answer, Exception)
            learner = models.get(key, 0, now).learner
            example = LabeledExample(f"e{i}", x, y, answer.served, answer.shadow, now)
            if fallback is not None:
                fallback.learn(example)
                if answer.fallback:  # the key judges only its own answers
                    example = example._replace(served=NO_ANSWER, shadow=None)
            if learner.learn(example).learned:
                models.learned(key)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    per_1k = 1000 / len(rows)
    return {
        "keys": keys,
        "store": "disk" if store.disk else "memory",
        "cache": cache,
        "mode": mode,
        "us_per_event": round(elapsed / len(rows) * 1e6, 1),
        "cpu_us_per_event": round(cpu / len(rows) * 1e6, 1),
        "answer_cpu_us_per_event": round(answering / len(rows) * 1e6, 1),
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
    inference = Settings().inference
    parser.add_argument("--mode", choices=("event", "batch"), default="event")
    parser.add_argument("--batch", type=int, default=inference.max_batch)
    parser.add_argument("--min-rows", type=int, default=inference.many_min_rows)
    parser.add_argument(
        "--min-examples",
        type=int,
        default=0,
        help="model.key_min_examples with the global fallback (0: every key answers itself)",
    )
    args = parser.parse_args()
    print(
        f"{args.events} events, 15 numeric features, shipped defaults (guard, drift challenger, "
        f"logistic regression), Zipf {args.zipf} over the keys; model.key_cache {args.cache} "
        f"(default {Settings().model.key_cache}); model.key_store {args.store}; "
        f"inference {args.mode}"
        + (
            f", micro-batch {args.batch}, many_min_rows {args.min_rows}"
            if args.mode == "batch"
            else ""
        )
    )
    header = f"{'keys':>7} {'distinct':>8} {'held':>6} {'us/ev':>7} {'cpu us/ev':>9} "
    header += f"{'answer cpu':>10} {'peak RSS MB':>11} "
    print(header + f"{'writes/1k':>9} {'loads/1k':>8} {'bytes/value':>11}")
    rows_out = []
    for keys in (int(k) for k in args.keys.split(",")):
        rows = stream(keys, args.zipf, args.events, args.seed)
        row = run(
            keys, args.cache, rows, args.store, args.mode, args.batch, args.min_rows,
            args.min_examples,
        )  # fmt: skip
        rows_out.append(row)
        print(
            f"{row['keys']:>7} {row['distinct']:>8} {row['held']:>6} {row['us_per_event']:>7} "
            f"{row['cpu_us_per_event']:>9} {row['answer_cpu_us_per_event']:>10} "
            f"{row['peak_rss_mb']:>11} {row['writes_per_1k']:>9} "
            f"{row['loads_per_1k']:>8} {row['stored_bytes_per_value']:>11}"
        )
    print("peak RSS is the process's high-water mark: each row includes the rows above it")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows_out, "args": vars(args) | {"json": str(args.json)}})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
