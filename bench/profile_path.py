"""Where the time of one event goes on the straight path, without Kafka.

    python bench/profile_path.py [--events 30000] [--mode event|batch]
                                 [--config defaults|features_off] [--cpu [--repeats N]] [--json]

Runs :class:`~stream_app.core.pipeline.Pipeline` over the same seeded events as ``bench/run.py``
(15 numeric features, inline labels, logistic regression; the shipped defaults, or guard off and
drift policy none) into an output that drops what it is given, beside the bare River loop (the
floor). Then profiles the same
run with cProfile and sums the own time of every function by where it lives: River (the model),
stream_app's modules one by one, orjson, prometheus_client, the rest. The garbage collector
is tuned as the worker tunes it (``serve.gc_threshold``), for the floor too. Asserts nothing.

``--cpu`` times the path in CPU time (``time.process_time``), the least of ``--repeats`` runs on
fresh paths: on a shared machine, wall time moves with the other processes' load more than a
change to the path does (compare code before and after with alternated runs of this).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import floor, make_events
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.settings import Settings
from stream_app.worker.collector import tune_collector

BATCH = 2000
"""Records handed to the path at once, as the serve loop's poll gives them (max_poll_records)."""


class Rec:
    """The parts of a Kafka record the path reads."""

    __slots__ = ("key", "offset", "partition", "topic", "value")

    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = (
            "features",
            0,
            offset,
            key,
            value,
        )


class Drop:
    """An output that drops what it is given (the emitter's cost is Kafka's, measured elsewhere)."""

    def to_partition(self, topic: str, partition: int, key: bytes | None, value: bytes) -> None:
        """Drop it."""

    def keyed(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Drop it."""


def pipeline(
    mode: str,
    learn_many: bool = False,
    config: str = "features_off",
    guard: dict[str, Any] | None = None,
) -> Pipeline:
    """A fresh path as the bench's worker runs it, in a configuration of ``bench/run.py``.

    ``guard``: [guard] settings over the configuration's (to price the guard: ``{"enabled":
    false}`` on the defaults).
    """
    settings = Settings().replace(inference={"mode": mode, "learn_many": learn_many})
    if config == "features_off":
        settings = settings.replace(guard={"enabled": False}, drift={"policy": "none"})
    if guard:
        settings = settings.replace(guard=guard)
    path = Pipeline(settings, Learner(settings), Metrics())
    path.output_partitions = 1
    return path


def run(path: Pipeline, records: list[Rec], clock: Any = time.perf_counter) -> float:
    """Serve every record in poll-sized batches; return seconds by ``clock``."""
    out = Drop()
    started = clock()
    for i in range(0, len(records), BATCH):
        path.features(records[i : i + BATCH], time.perf_counter(), out)
    return clock() - started


def where(filename: str) -> str:
    """Name the place a function lives, for the breakdown."""
    if "/river/" in filename:
        return "river (the model)"
    if "/stream_app/" in filename:
        return "stream_app/" + filename.rsplit("/", 1)[-1]
    for lib in ("orjson", "prometheus_client", "pandas", "numpy"):
        if lib in filename:
            return lib
    return "other (builtins, stdlib)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--mode", choices=("event", "batch"), default="event")
    parser.add_argument("--config", choices=("defaults", "features_off"), default="features_off")
    parser.add_argument("--learn-many", action="store_true", help="inference.learn_many (batch)")
    parser.add_argument("--cpu", action="store_true", help="time the path in CPU time")
    parser.add_argument("--repeats", type=int, default=1, help="with --cpu: the least of N runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events = make_events(args.events)
    records = [Rec(i, key, value) for i, (key, value, _, _) in enumerate(events)]
    tune_collector(Settings().serve.gc_threshold)  # as the worker does once started (floor too)
    floor_rate = floor(events, "stream_app.models:logistic_regression")
    if args.cpu:
        seconds = min(
            run(pipeline(args.mode, args.learn_many, args.config), records, time.process_time)
            for _ in range(max(1, args.repeats))
        )
    else:
        seconds = run(pipeline(args.mode, args.learn_many, args.config), records)
    profile = cProfile.Profile()
    profile.enable()
    run(pipeline(args.mode, args.learn_many, args.config), records)
    profile.disable()
    stats = pstats.Stats(profile)
    own: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        own[where(filename)] += tottime
    total = sum(own.values())
    report: dict[str, Any] = {
        "events": args.events,
        "mode": args.mode,
        "config": args.config,
        "floor_us": 1e6 / floor_rate,
        "path_us": 1e6 * seconds / args.events,
        "path_clock": "cpu" if args.cpu else "wall",
        "share": {k: v / total for k, v in sorted(own.items(), key=lambda kv: -kv[1])},
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"bench/profile_path.py: {args.events} events, {args.config}, {args.mode} mode"
        f"{' with learn_many' if args.learn_many else ''}, no Kafka: "
        f"{report['path_us']:.1f} us/event on the path"
        f"{f' (CPU time, least of {args.repeats})' if args.cpu else ''}, floor (River alone) "
        f"{report['floor_us']:.1f} us/event"
    )
    print("own time by place (cProfile; its overhead inflates small functions):")
    for place, share in report["share"].items():
        if share >= 0.005:
            print(f"  {place:32} {share:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
