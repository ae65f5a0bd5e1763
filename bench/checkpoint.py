"""Checkpoint size and time for every shipped model factory after N learned examples.

    python bench/checkpoint.py [--examples 10000] [--json]

Each factory learns a seeded stream (8 numeric features, one categorical), then its learner state
is checkpointed as the worker does it (pickle, zlib, SHA-256, 512 KiB chunks) and loaded back.
Prints compressed size, chunk count, encode and decode time.

Then the question that matters for serving: how long does the event loop stall while a
checkpoint is encoded, inline (``registry.encode_in_child = false``) or in a forked child (the
default)? A ticker that should wake every millisecond measures its worst and p99 lateness during
each encoding. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import time

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.predict import Prediction
from stream_app.registry.checkpoint import Checkpointer, encode_in_child
from stream_app.registry.records import Registry, decode_blob, encode_blob, pack
from stream_app.settings import Settings

FACTORIES = [
    "logistic_regression",
    "linear_regression",
    "hoeffding_tree",
    "gaussian_nb",
    "adaptive_random_forest",
]


def measure(factory: str, examples: int) -> dict[str, object]:
    learner, settings = learner_of(factory, examples)
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


def learner_of(factory: str, examples: int) -> tuple[Learner, Settings]:
    """A learner of ``factory`` that has learned ``examples`` seeded examples."""
    settings = Settings().replace(
        model={"factory": f"stream_app.models:{factory}"}, guard={"enabled": False}
    )
    learner = Learner(settings)
    rng = random.Random(4)
    for i in range(examples):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(8)} | {"c": rng.choice("abc")}
        signal = x["f0"] + x["f1"] - x["f2"]
        y = signal > 0 if learner.task == "classification" else 2.0 * signal
        learner.learn(LabeledExample(f"e{i}", x, y, Prediction(None, {}), None, float(i)))
    return learner, settings


async def loop_stall(learner: Learner, settings: Settings, in_child: bool) -> dict[str, float]:
    """Worst and p99 lateness (ms) of a 1 ms ticker while one checkpoint is encoded."""
    lateness: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        while not stop.is_set():
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            lateness.append(max(time.perf_counter() - due, 0.0))

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    lateness.clear()
    plan = Checkpointer(settings).plan(learner, Registry())
    level = settings.registry.compression_level
    started = time.perf_counter()
    if in_child:
        await encode_in_child(plan.states, level)
    else:
        [pack(state, level) for state in plan.states]
        await asyncio.sleep(0)
    seconds = time.perf_counter() - started
    await asyncio.sleep(0.01)
    stop.set()
    await ticker
    ordered = sorted(lateness) or [0.0]
    return {
        "encode_s": seconds,
        "worst_ms": ordered[-1] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
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
    stalls = {}
    for factory in ("logistic_regression", "adaptive_random_forest"):
        learner, settings = learner_of(factory, args.examples)
        stalls[factory] = {
            mode: asyncio.run(loop_stall(learner, settings, in_child=mode == "child"))
            for mode in ("inline", "child")
        }
    if args.json:
        print(json.dumps({"examples": args.examples, "factories": rows, "loop_stall": stalls}))
        return 0
    print(f"bench/checkpoint.py: learner state after {args.examples} examples")
    print(f"{'factory':24} {'bytes':>12} {'chunks':>6} {'encode ms':>10} {'decode ms':>10}")
    for r in rows:
        line = f"{r['factory']:24} {r['bytes']:>12,} {r['chunks']:>6} "
        print(line + f"{r['encode_ms']:>10.1f} {r['decode_ms']:>10.1f}")
    print("\nevent loop while one checkpoint is encoded (a 1 ms ticker's lateness):")
    print(f"{'factory':24} {'where':7} {'encode s':>9} {'worst ms':>9} {'p99 ms':>7}")
    for factory, modes in stalls.items():
        for mode, r in modes.items():
            print(
                f"{factory:24} {mode:7} {r['encode_s']:>9.3f} {r['worst_ms']:>9.1f} "
                f"{r['p99_ms']:>7.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
