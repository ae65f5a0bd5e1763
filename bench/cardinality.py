"""What ``model.max_indicators`` costs in accuracy on a stream with many categorical values.

    python bench/cardinality.py [--events 200000] [--items 100000] [--bounds 1024,16384,65536]

In process, no Kafka: a model learns a seeded stream event by event, predicting each event before
learning it (prequential accuracy, as the worker scores). Each event has 4 numeric features, an
``item`` drawn from ``--items`` values (Zipf-like: a few are frequent, most rare) whose hidden
effect moves the label, and a ``user`` never seen before (no signal, only growth). One row per
bound, the shipped default marked, and one without any bound (the unbounded one-hot encoding used
before issue 21). Two models per row: the shipped ``logistic_regression`` factory, whose
StandardScaler turns every indicator (always 1.0 when present) into 0.0, so strings carry no signal
through it, and the same without the scaler (``BoundedOneHot | LogisticRegression``), where they
do. Each gives the accuracy over the whole stream; the first also the inputs it tracks at the end
and its pickled size.
"""

from __future__ import annotations

import argparse
import math
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from river import linear_model

from stream_app.models import (
    BoundedOneHot,
    OneHotStrings,
    logistic_regression,
    set_max_indicators,
    tracked_inputs,
)
from stream_app.scaling import ScaleNumbers
from stream_app.settings import ModelSettings

NUMERIC = 4
ITEM_EFFECT = 2.0
"""Standard deviation of an item's hidden effect on the label's log-odds."""
ZIPF_EXPONENT = 1.1
SEED = 21
MB = 1024.0 * 1024.0


def stream(events: int, items: int, seed: int) -> list[tuple[dict[str, Any], bool]]:
    """Seeded events: numbers, a Zipf-like ``item`` with a hidden effect, a never-seen ``user``."""
    rng = random.Random(seed)
    effects = [rng.gauss(0, ITEM_EFFECT) for _ in range(items)]
    weights = [1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in range(items)]
    chosen = rng.choices(range(items), weights=weights, k=events)
    out = []
    for i, item in enumerate(chosen):
        x: dict[str, Any] = {f"x{k}": rng.gauss(0, 1) for k in range(NUMERIC)}
        logit = x["x0"] - x["x1"] + 0.5 * x["x2"] + effects[item]
        y = rng.random() < 1.0 / (1.0 + math.exp(-logit))
        x["item"] = f"i{item}"
        x["user"] = f"u{i}"
        out.append((x, y))
    return out


def build(bound: int | None, scaled: bool) -> Any:
    """The default pipeline with this bound (None: every indicator kept), with or without scaler."""
    first = OneHotStrings() if bound is None else BoundedOneHot(bound)
    if scaled:
        scale = ScaleNumbers() if bound is None else ScaleNumbers(bound)
        return scale | first | linear_model.LogisticRegression()
    return first | linear_model.LogisticRegression()


def run(model: Any, data: list[tuple[dict[str, Any], bool]]) -> dict[str, float]:
    """Prequential accuracy, tracked inputs, pickled size and time per event."""
    hits = 0
    started = time.perf_counter()
    for x, y in data:
        hits += model.predict_one(x) == y
        model.learn_one(x, y)
    seconds = time.perf_counter() - started
    weights = len(model["LogisticRegression"].weights)
    return {
        "accuracy": hits / len(data),
        "inputs": float(tracked_inputs(model) or weights),
        "pickled_mb": len(pickle.dumps(model)) / MB,
        "us_per_event": seconds / len(data) * 1e6,
    }


def main() -> int:
    """Print one row per bound, the shipped default among them, and the unbounded encoding."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    default = ModelSettings().max_indicators
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--bounds", default=f"1024,16384,{default}")
    args = parser.parse_args()
    bounds = sorted({int(b) for b in args.bounds.split(",")} | {default})
    data = stream(args.events, args.items, SEED)
    distinct = len({x["item"] for x, _ in data})
    print(
        f"bench/cardinality.py: {args.events:,} events, {distinct:,} distinct items "
        f"(of {args.items:,}), a new user per event"
    )
    print(
        f"{'model.max_indicators':>22}  {'shipped LR':>10}  {'no scaler':>9}  {'inputs':>8}  "
        f"{'pickled':>8}  {'us/event':>8}"
    )
    rows: list[tuple[str, Any]] = [
        (f"{b:,}" + (" (default)" if b == default else ""), b) for b in bounds
    ]
    rows.append(("unbounded", None))
    for label, bound in rows:
        if bound == default:  # the shipped factory itself, bounded as the worker bounds it
            shipped = set_max_indicators(logistic_regression(), bound)
        else:
            shipped = build(bound, scaled=True)
        r = run(shipped, data)
        plain = run(build(bound, scaled=False), data)
        print(
            f"{label:>22}  {r['accuracy']:10.4f}  {plain['accuracy']:9.4f}  "
            f"{r['inputs']:8,.0f}  {r['pickled_mb']:6.1f}MB  {r['us_per_event']:8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
