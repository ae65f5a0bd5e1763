"""Backpressure: a producer faster than the worker. Lag builds, is reported, and drains; memory
stays bounded; nothing is dropped.

    python bench/backpressure.py [--events 300000] [--json]

Sends ``--events`` to one worker (4 partitions) as fast as Kafka takes them, and samples the
worker every 0.2 s until it has served them all: the largest ``stream_app_consumer_lag`` (sum over
the features partitions), the worker's RSS before, at its peak and at the end, both rates, and
whether every event got its prediction. The serve loop holds at most ``serve.max_poll_records``
events per batch and the consumer prefetches at most ``serve.max_partition_fetch_bytes`` per
partition, so a backlog waits in Kafka, not in the worker. Starts its own broker unless
STREAM_APP_BROKER is set. Asserts nothing (tests/integration/test_backpressure.py is the short
version).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' load drivers

from tests.integration.load import bench_worker, flood, rss_kb
from tests.integration.support import POLL_S, WorkerProcess, end_offsets

MB = 1024.0


def drained_lag(worker: WorkerProcess, within_s: float = 5.0) -> float:
    """The reported lag once it reads 0, or what it still reads after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        scraped = worker.metrics()
        lag = sum(v for k, v in scraped.items() if k.startswith("stream_app_consumer_lag"))
        if lag == 0 or time.monotonic() > deadline:
            return lag
        time.sleep(POLL_S)


def main() -> int:
    """Run the flood and print its figures (or one JSON object)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="stream-app-backpressure-") as tmp,
        bench_worker(Path(tmp), serve="lag_interval_s = 0.2") as (worker, bootstrap),
    ):
        rss_before = rss_kb(worker.proc.pid)
        observed = asyncio.run(flood(worker, bootstrap, args.events))
        predictions = asyncio.run(end_offsets(bootstrap, worker.topics["predictions"]))
        letters = asyncio.run(end_offsets(bootstrap, worker.topics["dead_letters"]))
        final_lag = drained_lag(worker)
    report = {
        "events": args.events,
        "produce_per_s": args.events / observed.send_seconds,
        "serve_per_s": args.events / observed.seconds,
        "max_lag": max(observed.lag),
        "final_lag": final_lag,
        "rss_mb_before": rss_before / MB,
        "rss_mb_peak": max(kb for _, kb in observed.rss_kb) / MB,
        "rss_mb_end": observed.rss_kb[-1][1] / MB,
        "predictions": sum(predictions.values()),
        "dead_letters": sum(letters.values()),
        "error_lines": len(observed.errors),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"bench/backpressure.py: {args.events:,} events sent as fast as Kafka takes them")
    print(
        f"produced {report['produce_per_s']:,.0f} events/s, served {report['serve_per_s']:,.0f} "
        f"events/s; stream_app_consumer_lag peaked at {report['max_lag']:,.0f}, "
        f"{report['final_lag']:,.0f} at the end"
    )
    print(
        f"worker RSS {report['rss_mb_before']:.1f} MB before, {report['rss_mb_peak']:.1f} MB at "
        f"its peak, {report['rss_mb_end']:.1f} MB at the end"
    )
    print(
        f"{report['predictions']:,} predictions for {args.events:,} events, "
        f"{report['dead_letters']} dead letters, {report['error_lines']} ERROR lines"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
