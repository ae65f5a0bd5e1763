"""Soak: N events with delayed labels through one worker; RSS growth, the pending bound, errors.

    python bench/soak.py [--events 1000000] [--chunk 10000] [--pending-max 100000]
                         [--cardinality numeric|unique] [--json]

One worker (4 partitions) on its own topics; events go in chunks of ``--chunk``, and 80% of each
chunk is labeled once the worker has served it (two chunks later), the rest never, so the pending
store fills to ``learn.pending_max`` and must evict. Prints the worker's RSS at 100k events and at
the end, the growth between them and the growth after the store reached its bound, the largest
``stream_app_pending_events`` seen against its bound, ERROR lines logged during the run, and
events/s (first event sent -> last one served). ``--cardinality unique`` gives every event a
string never seen before (``user``) and new feature names too, and prints the serving model's
tracked inputs (``stream_app_model_features``) and last checkpoint size (``stream_app_model_bytes``)
at 100k events and at the end. Starts its own broker unless STREAM_APP_BROKER is set. Asserts
nothing; not part of make test (tests/integration/test_soak.py is the short one).
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

from stream_app.settings import LearnSettings
from tests.integration.load import CARDINALITIES, bench_worker, soak

MB = 1024.0
MARK = 100_000


def main() -> int:
    """Run the soak and print its figures (or one JSON object)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument(
        "--pending-max", type=int, default=LearnSettings().pending_max, help="learn.pending_max"
    )
    parser.add_argument(
        "--cardinality",
        choices=CARDINALITIES,
        default="numeric",
        help="unique: a new string value and new feature names in every event",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = f"[learn]\npending_max = {args.pending_max}\n"
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="stream-app-soak-") as tmp,
        bench_worker(Path(tmp), config) as (worker, bootstrap),
    ):

        def progress(line: str) -> None:
            if not args.json:
                print(f"{time.monotonic() - started:7.1f}s  {line}", flush=True)

        observed = asyncio.run(
            soak(
                worker,
                bootstrap,
                args.events,
                chunk=args.chunk,
                cardinality=args.cardinality,
                progress=progress,
            )
        )
        scraped = worker.metrics()
    mark = min(MARK, args.events)
    # Once the pending store is full, its memory is spent: growth after that is what could leak.
    full = next(
        (i for i, n in enumerate(observed.pending) if n >= args.pending_max),
        len(observed.pending) - 1,
    )
    full_at, full_kb = observed.rss_kb[full]
    report = {
        "events": args.events,
        "cardinality": args.cardinality,
        "model_features_at_mark": observed.at(observed.model_features, mark),
        "model_features_end": observed.model_features[-1],
        "model_features_max": max(observed.model_features),
        "model_bytes_at_mark": observed.at(observed.model_bytes, mark),
        "model_bytes_end": observed.model_bytes[-1],
        "labels_sent": observed.labels,
        "labels_learned": scraped.get("stream_app_labels_learned_total", 0.0),
        "labels_rejected": {
            k: v for k, v in scraped.items() if k.startswith("stream_app_labels_rejected_total")
        },
        "rss_mb_at_mark": observed.rss_at(mark) / MB,
        "mark": mark,
        "rss_mb_end": observed.rss_kb[-1][1] / MB,
        "rss_growth_mb": (observed.rss_kb[-1][1] - observed.rss_at(mark)) / MB,
        "store_full_at_events": full_at,
        "rss_mb_store_full": full_kb / MB,
        "rss_growth_mb_after_full": (observed.rss_kb[-1][1] - full_kb) / MB,
        "pending_max_seen": max(observed.pending),
        "pending_bound": args.pending_max,
        "error_lines": len(observed.errors),
        "events_per_s": args.events / observed.seconds,
        "seconds": observed.seconds,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"bench/soak.py: {args.events:,} events ({args.cardinality}), "
        f"{observed.labels:,} delayed labels"
    )
    print(
        f"worker RSS at {mark:,} events {report['rss_mb_at_mark']:.1f} MB, at the end "
        f"{report['rss_mb_end']:.1f} MB: growth {report['rss_growth_mb']:+.1f} MB"
    )
    print(
        f"the pending store reached its bound at {full_at:,} events served (RSS "
        f"{report['rss_mb_store_full']:.1f} MB); growth after that "
        f"{report['rss_growth_mb_after_full']:+.1f} MB"
    )
    print(
        f"pending store: at most {report['pending_max_seen']:,.0f} of its bound "
        f"{args.pending_max:,}; labels learned {report['labels_learned']:,.0f}, "
        f"rejected {report['labels_rejected']}"
    )
    print(
        f"model: {report['model_features_at_mark']:,.0f} inputs tracked at {mark:,} events, "
        f"{report['model_features_end']:,.0f} at the end (most seen "
        f"{report['model_features_max']:,.0f}); last checkpoint "
        f"{report['model_bytes_at_mark']:,.0f} bytes at {mark:,} events, "
        f"{report['model_bytes_end']:,.0f} at the end"
    )
    print(f"ERROR lines during the run: {len(observed.errors)}")
    for line in observed.errors[:5]:
        print(f"  {line}")
    print(f"{report['events_per_s']:,.0f} events/s ({observed.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
