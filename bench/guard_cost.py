"""What the noise guard adds to a labelled example's cost, without Kafka.

    python bench/guard_cost.py [--events 20000] [--repeats 3] [--noise 0.2]
                               [--guard '{"witness": false}'] [--json]

Feeds the same seeded labelled events as ``bench/run.py`` (15 numeric features, inline labels,
logistic regression) through two paths, each with the guard off and with the shipped guard
(``config/default.toml`` as it is: every rule and the witness on; ``--guard`` overrides some of its
settings, to price them), everything else at its defaults:

- ``path``: :meth:`~stream_app.core.pipeline.Pipeline.features`, what the worker runs per event
  (decode, validate, predict, learn, drift check, emit into an output that drops what it is given);
- ``learner``: the :class:`~stream_app.core.learn.Learner` alone (answer, then learn), the part the
  guard lives in: the same added cost over a smaller whole.

Each on the clean labels and with ``--noise`` of the labels flipped (seeded), where the guard holds
labels out all the time and its witness works hardest. Prints CPU microseconds per labelled example
(the minimum of ``--repeats`` runs, guard off and on alternated), and the ratio guard on / guard
off; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.profile_path import Rec, run
from bench.run import make_events
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.settings import Settings

GUARDS = {"off": {"enabled": False}, "on": {}}
"""Guard configurations compared: off, and the shipped one (no overrides)."""


def flipped(events: list[Any], noise: float, seed: int) -> list[Any]:
    """The same events with ``noise`` of their labels flipped (seeded), body and all."""
    rng = random.Random(seed)
    out = []
    for key, _, x, y in events:
        label = (not y) if rng.random() < noise else y
        body = orjson.dumps({"id": key.decode(), "features": x, "label": label})
        out.append((key, body, x, label))
    return out


def on_path(events: list[Any], guard: dict[str, Any]) -> float:
    """CPU seconds for the worker's straight path over ``events``."""
    settings = Settings().replace(guard=guard)
    path = Pipeline(settings, Learner(settings), Metrics())
    path.output_partitions = 1
    records = [Rec(i, key, value) for i, (key, value, _, _) in enumerate(events)]
    started = time.process_time()
    run(path, records)
    return time.process_time() - started


def on_learner(events: list[Any], guard: dict[str, Any]) -> float:
    """CPU seconds for the learner alone: answer, then learn, each event."""
    learner = Learner(Settings().replace(guard=guard))
    started = time.process_time()
    for i, (key, _, x, y) in enumerate(events):
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(key.decode(), x, y, served, shadow, float(i)))
    return time.process_time() - started


def alternated(
    measure: Any, events: list[Any], guards: dict[str, dict[str, Any]], repeats: int
) -> dict[str, float]:
    """CPU us per event of each guard configuration: the minimum of ``repeats`` runs, alternated
    (off, on, off, on, ...) so that a shared machine's load weighs on both alike."""
    seconds: dict[str, list[float]] = {name: [] for name in guards}
    for _ in range(repeats):
        for name, guard in guards.items():
            seconds[name].append(measure(events, guard))
    return {name: 1e6 * min(runs) / len(events) for name, runs in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs each; the minimum counts")
    parser.add_argument("--noise", type=float, default=0.2, help="share of labels flipped")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--guard", type=json.loads, default={}, help="[guard] overrides, JSON")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    guards = {**GUARDS, "on": {**GUARDS["on"], **args.guard}}
    logging.disable(logging.WARNING)
    clean = make_events(args.events)
    streams = {"clean": clean, f"noise={args.noise:.0%}": flipped(clean, args.noise, args.seed)}
    rows: list[dict[str, Any]] = []
    for where, measure in (("path", on_path), ("learner", on_learner)):
        for labels, events in streams.items():
            us = alternated(measure, events, guards, args.repeats)
            rows.append(
                {
                    "where": where,
                    "labels": labels,
                    "guard_off_us": us["off"],
                    "guard_on_us": us["on"],
                    "ratio": us["on"] / us["off"],
                }
            )
    if args.json:
        print(json.dumps({"events": args.events, "guard": args.guard, "rows": rows}))
        return 0
    print(
        f"bench/guard_cost.py: {args.events} labelled events, 15 features, logistic regression, "
        f"CPU us per labelled example, min of {args.repeats}; guard on: shipped"
        f"{' with ' + json.dumps(args.guard) if args.guard else ''}"
    )
    header = f"{'where':8} {'labels':10} {'guard off':>9} {'guard on':>9} {'on/off':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['where']:8} {r['labels']:10} {r['guard_off_us']:9.1f} {r['guard_on_us']:9.1f} "
            f"{r['ratio']:7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
