"""How many labeled examples one writer learns per second, and how far behind it falls.

    python bench/learner.py [--examples 60000] [--followers 1,2,4] [--seconds 10]
                            [--max-lag-s 2] [--json]

One global model has one writer: every follower forwards its labeled examples to it. This runs
the service's own code without Kafka, with the shipped defaults (guard with witness, drift policy
``challenger``, logistic regression, the seeded events of ``bench/run.py``):

1. a follower (``Pipeline.features`` with ``writer = False``) serves the labeled events and
   forwards them: its rate is what one follower offers;
2. the writer (``Pipeline.examples``) learns the forwarded examples as fast as it can: the labeled
   examples per second one writer sustains;
3. for N followers, the forwarded examples are released at N times the follower's rate (each
   stamped with its release time, as Kafka stamps it) and the writer learns them in poll-sized
   batches for ``--seconds``, once with ``learn.max_lag_s = 0`` (off) and once with the bound:
   its lag in examples and in seconds every half second, what it learned and what it shed.

The followers' serving runs before the clock starts, so the writer has the CPU to itself, as it
has on its own machine; Kafka's fetch and the examples topic are not in the figures. Prints a
table (or one JSON object); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.profile_path import Drop, Rec
from bench.run import make_events
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.role import WriterRole
from stream_app.settings import Settings

SAMPLE_EVERY_S = 0.5
"""How often the lag curve is sampled."""


@dataclass
class Example:
    """A forwarded example as the writer reads it from the examples topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


class Capture(Drop):
    """An output that keeps what followers forward to the writer and drops the rest."""

    def __init__(self, examples_topic: str) -> None:
        self.topic = examples_topic
        self.values: list[tuple[bytes | None, bytes]] = []

    def keyed(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Keep a forwarded example."""
        if topic == self.topic:
            self.values.append((key, value))


def path(settings: Settings, writer: bool) -> Pipeline:
    """A fresh path: the writer, or a follower that forwards."""
    pipeline = Pipeline(settings, Learner(settings), Metrics(), WriterRole(writer=writer))
    pipeline.output_partitions = settings.topics.partitions
    pipeline.partitions = 1  # every record arrives at its home: no hop through the join topic
    return pipeline


def renamed(
    forwarded: list[tuple[bytes | None, bytes]], n: int
) -> list[tuple[bytes | None, bytes]]:
    """``n`` forwarded examples: the served ones again and again, each round under new ids."""
    out = list(forwarded[:n])
    while len(out) < n:
        suffix = f"-r{len(out) // len(forwarded)}"
        for key, value in forwarded[: n - len(out)]:
            example = orjson.loads(value)
            example["id"] += suffix
            out.append(((key or b"") + suffix.encode(), orjson.dumps(example)))
    return out


def forward(settings: Settings, n: int) -> tuple[list[tuple[bytes | None, bytes]], float]:
    """Serve ``n`` labeled events on a follower; return what it forwarded and its events/s.

    The follower's model has learned other events of the stream first: a follower serves the
    writer's versions, not an empty model (which answers nothing, and fast).
    """
    teacher = path(settings, writer=True)
    lessons = [Rec(i, key, value) for i, (key, value, _, _) in enumerate(make_events(n))]
    teacher.features(lessons, time.perf_counter(), Drop())
    follower = path(settings, writer=False)
    follower.use(teacher.learner)
    out = Capture(settings.examples_topic)
    records = [Rec(i, key, value) for i, (key, value, _, _) in enumerate(make_events(n))]
    batch = settings.serve.max_poll_records
    started = time.perf_counter()
    for i in range(0, n, batch):
        follower.features(records[i : i + batch], time.perf_counter(), out)
    return out.values, n / (time.perf_counter() - started)


def capacity(settings: Settings, forwarded: list[tuple[bytes | None, bytes]]) -> float:
    """Labeled examples per second the writer learns when they are all there (no lag bound)."""
    writer = path(settings, writer=True)
    stamp = int(time.time() * 1000)
    records = [
        Example(settings.examples_topic, 0, i, k, v, stamp) for i, (k, v) in enumerate(forwarded)
    ]
    batch = settings.serve.max_poll_records
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        writer.examples(records[i : i + batch], Drop())
    return len(records) / (time.perf_counter() - started)


def curve(
    settings: Settings,
    forwarded: list[tuple[bytes | None, bytes]],
    offered: float,
    seconds: float,
) -> dict[str, Any]:
    """The writer under an offered rate: its lag every half second, what it learned and shed."""
    writer = path(settings, writer=True)
    batch = settings.serve.max_poll_records
    total = min(len(forwarded), int(offered * seconds))
    taken = 0
    samples: list[dict[str, float]] = []
    started = time.time()
    next_sample = 0.0
    while (elapsed := time.time() - started) < seconds and taken < total:
        due = min(total, int(offered * elapsed))
        if elapsed >= next_sample:
            next_sample += SAMPLE_EVERY_S
            samples.append(
                {"t": round(elapsed, 2), "lag_examples": due - taken, "lag_s": writer.lag_seconds}
            )
        end = min(due, taken + batch)
        if end == taken:
            continue  # nothing released yet: the writer waits (as a poll would)
        records = [
            Example(
                settings.examples_topic, 0, i, *forwarded[i], int(1000 * (started + i / offered))
            )
            for i in range(taken, end)
        ]
        writer.lag_examples = due - taken  # what the serve loop reads from the end offset
        writer.examples(records, Drop())
        taken = end
    elapsed = time.time() - started
    learned = writer.metrics.labels_learned._value.get()
    shed = writer.metrics.labels_shed._value.get()
    return {
        "offered_per_s": offered,
        "max_lag_s": settings.learn.max_lag_s,
        "released": min(total, int(offered * elapsed)),
        "reached": taken,
        "learned": int(learned),
        "shed": int(shed),
        "held_out_or_duplicate": taken - int(learned) - int(shed),
        "final_lag_examples": samples[-1]["lag_examples"] if samples else 0,
        "max_lag_seconds": max((s["lag_s"] for s in samples), default=0.0),
        "curve": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--followers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-lag-s", type=float, default=2.0, help="the bound of the second run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    settings = Settings()
    forwarded, follower_rate = forward(settings, args.examples)
    writer_rate = capacity(settings, forwarded)
    followers = [int(f) for f in args.followers.split(",")]
    pool = renamed(forwarded, int(max(followers) * follower_rate * args.seconds) + 1)
    runs = []
    for n in followers:
        for bound in (0.0, args.max_lag_s):
            bounded = settings.replace(learn={"max_lag_s": bound})
            runs.append({"followers": n, **curve(bounded, pool, n * follower_rate, args.seconds)})
    report = {
        "command": " ".join(["python", *sys.argv]),
        "follower_events_per_s": follower_rate,
        "writer_examples_per_s": writer_rate,
        "runs": runs,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"bench/learner.py, shipped defaults, no Kafka: one follower serves and forwards "
        f"{follower_rate:,.0f} labeled events/s; one writer learns {writer_rate:,.0f} examples/s"
    )
    print(
        f"{'followers':>9} {'offered/s':>10} {'max_lag_s':>9} {'learned':>8} {'shed':>7} "
        f"{'lag end':>8} {'max lag s':>9}  lag_s every {SAMPLE_EVERY_S}s"
    )
    for run in runs:
        shape = " ".join(f"{s['lag_s']:.1f}" for s in run["curve"])
        print(
            f"{run['followers']:>9} {run['offered_per_s']:>10,.0f} {run['max_lag_s']:>9g} "
            f"{run['learned']:>8,} {run['shed']:>7,} {run['final_lag_examples']:>8,} "
            f"{run['max_lag_seconds']:>9.1f}  {shape}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
