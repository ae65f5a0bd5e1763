"""The fused path against River's own pipeline methods, one call at a time (no worker, no Kafka).

    python bench/fused.py [--events 5000] [--repeats 5]

Trains the shipped logistic regression on seeded events of 15 float features, then times
``learn_one`` and ``predict_proba_one`` over the same events, through River's ``Pipeline`` and
through :mod:`stream_app.core.fused`, in CPU time, the least of ``--repeats`` passes each.
Asserts nothing (tests/property/test_fused_properties.py holds the two to the same bits).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_app.core import fused
from stream_app.models import logistic_regression


def least(passes: int, events: int, body: Callable[[], None]) -> float:
    """The least CPU time of ``passes`` calls of ``body``, in microseconds an event."""
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        body()
        best = min(best, time.process_time() - started)
    return best / events * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)
    names = [f"f{i}" for i in range(15)]
    xs = [{name: rng.gauss(0.0, 1.0) for name in names} for _ in range(args.events)]
    ys = [rng.random() < 0.5 for _ in xs]
    model = logistic_regression()
    for x, y in zip(xs, ys, strict=True):
        model.learn_one(x, y)
    learn, answer = model.learn_one, model.predict_proba_one
    rows = {
        "learn_one, River's pipeline": lambda: [learn(x, y) for x, y in zip(xs, ys, strict=True)],
        "learn_one, fused": lambda: [
            fused.learn_one(model, x, y) for x, y in zip(xs, ys, strict=True)
        ],
        "predict_proba_one, River's pipeline": lambda: [answer(x) for x in xs],
        "predict_proba_one, fused": lambda: [fused.predict_proba_one(model, x) for x in xs],
    }
    for name, body in rows.items():
        print(f"{name:36} {least(args.repeats, args.events, body):6.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
