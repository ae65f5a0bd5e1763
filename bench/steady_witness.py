"""False alarms of the noise guard's witness: adoptions on a steady stream, where none is right.

    python bench/steady_witness.py [--events 50000] [--seeds 7 1 3] [--json]

Feeds bench/run.py's ``make_events`` (a fixed linear concept, ``y = w.x + gauss(0, 0.5) > 0``,
15 features: no concept change, no flipped label) through the service's own Learner with the
default Settings, prequentially (answer, then learn), in two orders of the same events: as one
partition gives them, and as a worker with 4 partitions reads them (events spread over the
partitions by index, taken round-robin ``--chunk`` at a time). Every time the serving model
takes its witness's state is a false alarm: it replays one to two ``guard.witness_span`` of
examples in one go (a stall) for nothing. Prints the adoptions and the examples replayed per
seed and order. Then the same on a steady stream with noise the guard exists for: River's SEA
(variant 0, no change) with 20% of its labels flipped, where the guarded twin usually leads.
bench/learning.py prints the same counts under its tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from river.datasets import synth

from bench.run import make_events
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.settings import Settings

PARTITIONS = 4
ORDERS = ("1 partition", f"{PARTITIONS} partitions")
FLIPPED = 0.2
"""Share of the SEA stream's labels flipped."""


def flipped_sea(n: int, seed: int) -> list[Any]:
    """``n`` events of SEA (variant 0, no change), ``FLIPPED`` of the labels flipped."""
    rng = random.Random(seed)
    return [
        (None, None, x, (not y) if rng.random() < FLIPPED else y)
        for x, y in synth.SEA(variant=0, seed=seed).take(n)
    ]


def ordered(events: list[Any], order: str, chunk: int) -> list[Any]:
    """Return ``events`` as a worker reads them: in order, or spread and taken round-robin."""
    if order == ORDERS[0]:
        return events
    parts = [events[p::PARTITIONS] for p in range(PARTITIONS)]
    out: list[Any] = []
    for start in range(0, max(len(part) for part in parts), chunk):
        for part in parts:
            out += part[start : start + chunk]
    return out


def adoptions(events: list[Any], settings: Settings) -> tuple[int, int]:
    """Feed the events to a Learner; return (witness adoptions, examples they replayed)."""
    learner = Learner(settings)
    adopted = replayed = 0
    for i, (_, _, x, y) in enumerate(events):
        serving = learner.serving
        before = serving.model.estimator
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"e{i}", x, y, served, shadow, float(i)))
        witness = serving.witness
        if learner.serving is serving and serving.model.estimator is not before:
            assert witness is not None  # only a witness replaces the estimator in place
            adopted += 1
            replayed += serving.model.examples_learned - witness.learned_at_copy
    return adopted, replayed


def count(
    n: int, seeds: list[int], chunk: int, guard: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Adoptions per seed and order, with the default settings (``guard``: [guard] overrides)."""
    logging.disable(logging.WARNING)
    settings = Settings().replace(guard=guard or {})
    out: dict[str, Any] = {}
    for seed in seeds:
        events = make_events(n, seed)
        for order in ORDERS:
            adopted, replayed = adoptions(ordered(events, order, chunk), settings)
            out[f"seed {seed}, {order}"] = {"adoptions": adopted, "replayed": replayed}
    for seed in seeds:
        adopted, replayed = adoptions(flipped_sea(n, seed), settings)
        key = f"SEA {FLIPPED:.0%} flipped, seed {seed}"
        out[key] = {"adoptions": adopted, "replayed": replayed}
    return out


def print_counts(counts: dict[str, Any], n: int, chunk: int) -> None:
    """One line per seed and order, then the total."""
    print(
        f"witness adoptions on steady streams of {n} events (bench/run.py make_events; SEA with "
        f"{FLIPPED:.0%} flipped labels), shipped settings (with bench/learning.py's --guard, if "
        f"given); {PARTITIONS} partitions taken "
        f"round-robin {chunk} at a time: every one a false alarm"
    )
    for key, r in counts.items():
        print(f"  {key:28} {r['adoptions']:3d} adoptions, {r['replayed']:6d} examples replayed")
    total = sum(r["adoptions"] for r in counts.values())
    print(f"  total: {total} in {len(counts) * n} events")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 1, 3])
    parser.add_argument("--chunk", type=int, default=100, help="records per partition per turn")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    counts = count(args.events, args.seeds, args.chunk)
    if args.json:
        print(json.dumps({"events": args.events, "chunk": args.chunk, "orders": counts}))
    else:
        print_counts(counts, args.events, args.chunk)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
