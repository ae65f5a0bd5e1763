"""Checkpoint size and time for every shipped model factory after N learned examples.

    python bench/checkpoint.py [--examples 10000] [--json]

Each factory learns a seeded stream (8 numeric features, one categorical), then its learner state
is checkpointed as the worker does it (pickle, zlib, SHA-256, 512 KiB chunks) and loaded back.
Prints compressed size, chunk count, encode and decode time. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time

from stream_app.learn import Learner
from stream_app.predict import Prediction
from stream_app.registry import decode_blob, encode_blob
from stream_app.settings import Settings

FACTORIES = [
    "logistic_regression",
    "linear_regression",
    "hoeffding_tree",
    "gaussian_nb",
    "adaptive_random_forest",
]


def measure(factory: str, examples: int) -> dict[str, object]:
    settings = Settings().replace(
        model={"factory": f"stream_app.models:{factory}"}, guard={"enabled": False}
    )
    learner = Learner(settings)
    rng = random.Random(4)
    for i in range(examples):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(8)} | {"c": rng.choice("abc")}
        signal = x["f0"] + x["f1"] - x["f2"]
        y = signal > 0 if learner.task == "classification" else 2.0 * signal
        learner.learn(f"e{i}", x, y, Prediction(None, {}), None, now=float(i))
    state = {"format": 1, "learner": learner.snapshot()}
    started = time.perf_counter()
    blob = encode_blob(state, settings.registry.chunk_bytes, settings.registry.compression_level)
    encoded = time.perf_counter() - started
    started = time.perf_counter()
    decode_blob(blob.chunks, blob.sha256)
    decoded = time.perf_counter() - started
    return {
        "factory": factory,
        "bytes": blob.size,
        "chunks": len(blob.chunks),
        "encode_ms": encoded * 1000,
        "decode_ms": decoded * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rows = [measure(f, args.examples) for f in FACTORIES]
    if args.json:
        print(json.dumps({"examples": args.examples, "factories": rows}))
        return 0
    print(f"bench/checkpoint.py: learner state after {args.examples} examples")
    print(f"{'factory':24} {'bytes':>12} {'chunks':>6} {'encode ms':>10} {'decode ms':>10}")
    for r in rows:
        line = f"{r['factory']:24} {r['bytes']:>12,} {r['chunks']:>6} "
        print(line + f"{r['encode_ms']:>10.1f} {r['decode_ms']:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
