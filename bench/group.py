"""Labels a group of workers learns per second, global model versus keyed models (issue #14).

    python bench/group.py [--events 30000] [--keys 200] [--workers 1,2] [--broker kafka://h:p]
                          [--json]

One run, one broker, the same seeded events for every row: ``--events`` feature events with their
label inline, 15 numeric features, a top-level ``"user"`` field drawn uniformly from ``--keys``
keys (each key has its own hidden concept), each message keyed by its ``user`` (murmur2, as the
README asks of producers) on a 4-partition ``features`` topic. Rows:

- ``global``: the shipped config/default.toml as it is (one global model; the worker holding
  ``<app id>-commands`` learns, the others forward every labelled example to it);
- ``keyed, fallback global``: the same plus ``model.key_field = "user"`` (the shipped
  ``key_fallback = "global"``: each label teaches its key on the key's owner *and* the global
  model on the single writer);
- ``keyed, fallback none``: plus ``model.key_fallback = "none"`` (no single writer at all);

each with 1 and 2 worker processes (``python -m stream_app worker``) of one group. The workers are
started on the empty topics and the bench waits until they split all 4 partitions between them,
then it produces the events (so no rebalance falls in the measured window). Time runs from the
first prediction's ``served_at`` to the first scrape of the workers' ``/metrics`` (every
``--poll-s``) at which every label has been taught to every model it teaches:
``stream_app_labels_learned_total`` plus ``stream_app_labels_rejected_total`` (the guard holds a
few labels out) summed over the workers reaches the events (twice the events with the global
fallback: key and global model). labels/s is events divided by that time; labels/CPU-s is events
divided by the CPU time (user + system) the workers spent from their assignment to that scrape (a
figure that moves less than labels/s when other processes take the cores); ``busiest`` is events
divided by the CPU time of the busiest worker of the group: what the group would learn per second
if each worker had a core of its own and nothing else bounded it (the single writer of the global
model is the busiest: it learns every label); ``produce s`` is how long this bench took to produce
the events (the workers start on them at once); ``forwarded`` is
``stream_app_labels_forwarded_total`` summed over the workers.

What bounds it on a 2-core machine: CPU. The broker, the producer of this bench (while it
produces) and the workers share the two cores (with anything else running), so two workers do not
get two cores of their own and labels/s cannot double; labels/CPU-s and ``busiest`` say what the
work costs apart from that. Compare rows of one run, not with another machine. Starts its own
broker unless ``--broker`` (or STREAM_APP_BROKER) names one. Prints a table (or one JSON object);
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import bench_broker, create_topic, prefill, wait_healthy
from stream_app.tools.broker import free_port
from stream_app.tools.view import scrape

FEATURES = 15
PARTITIONS = 4
"""The shipped ``topics.partitions``: what two workers split."""
KEY_FIELD = "user"
ROWS: dict[str, dict[str, str]] = {
    "global": {},
    "keyed fallback global": {"key_field": KEY_FIELD},
    "keyed fallback none": {"key_field": KEY_FIELD, "key_fallback": "none"},
}
"""Each row's ``[model]`` settings over config/default.toml (``global`` is the shipped one)."""
HEALTHY_S = 180.0
"""Most wait for a worker's first 200 on /health (a loaded 2-core machine starts slowly)."""
STALL_S = 30.0
"""Give up on a row when the taught count has not moved for this long."""


def make_events(
    n: int, keys: int, seed: int = 7
) -> list[tuple[bytes, bytes, dict[str, float], bool]]:
    """``n`` labelled events with a ``user`` key; each key labels by its own hidden weights."""
    rng = random.Random(seed)
    weights = [[rng.gauss(0, 1) for _ in range(FEATURES)] for _ in range(keys)]
    out = []
    for i in range(n):
        k = rng.randrange(keys)
        x = {f"f{j}": rng.gauss(0, 1) for j in range(FEATURES)}
        y = sum(w * v for w, v in zip(weights[k], x.values(), strict=True)) > 0
        user = f"user-{k}"
        body = orjson.dumps({"id": f"e-{i}", KEY_FIELD: user, "features": x, "label": y})
        out.append((user.encode(), body, x, y))
    return out


def start_worker(
    bootstrap: str, prefix: str, model: dict[str, str], workdir: Path, n: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start worker ``n`` of group ``prefix``: shipped defaults, own topics, ``model`` over them."""
    port = free_port()
    path = workdir / f"{prefix}.toml"
    names = ("features", "predictions", "labels", "dead_letters", "model_events")
    topics = "".join(f'{key} = "{prefix}-{key}"\n' for key in names)
    lines = "".join(f'{key} = "{value}"\n' for key, value in model.items())
    path.write_text(f"[topics]\n{topics}[model]\n{lines}")
    env = {
        **os.environ,
        "STREAM_APP_BROKER": f"kafka://{bootstrap}",
        "STREAM_APP_ID": prefix,
        "STREAM_APP_WEB_PORT": str(port),
        "STREAM_APP_DATA_DIR": str(workdir / f"{prefix}-{n}"),
        "STREAM_APP_CONFIG": str(path),
    }
    with open(workdir / f"{prefix}-{n}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "-l", "warn"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def assigned(ports: list[int], timeout: float = HEALTHY_S) -> None:
    """Wait until every worker serves some partitions and together they serve all of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held: list[list[int]] = []
        for port in ports:
            url = f"http://127.0.0.1:{port}/health"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                held.append(orjson.loads(r.read()).get("partitions", []))
        if len(held) == len(ports) and all(held) and sum(map(len, held)) == PARTITIONS:
            return
        time.sleep(0.2)
    raise RuntimeError(f"workers on {ports} did not split {PARTITIONS} partitions in {timeout}s")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counts(ports: list[int]) -> dict[str, float]:
    """Sum the learning counters over the workers' /metrics."""
    out = {"learned": 0.0, "rejected": 0.0, "forwarded": 0.0, "fallback": 0.0}
    names = {
        "stream_app_labels_learned_total": "learned",
        "stream_app_labels_rejected_total": "rejected",
        "stream_app_labels_forwarded_total": "forwarded",
        "stream_app_key_fallback_answers_total": "fallback",
    }
    for port in ports:
        for key, value in scrape(port).items():
            name = names.get(key.partition("{")[0])
            if name is not None:
                out[name] += value
    return out


def taught(ports: list[int], expected: int, poll_s: float) -> tuple[float, dict[str, float]]:
    """Poll until learned + rejected reaches ``expected``; return the wall time and the counts.

    The time is taken when the scrape that saw the count returned: an upper bound by at most one
    scrape and ``poll_s``.
    """
    last, moved = -1.0, time.monotonic()
    while True:
        try:
            seen = counts(ports)
        except OSError:  # a worker busy with a batch answers /metrics late: ask again
            continue
        now = time.time()  # (after the answer: the count was reached by then)
        total = seen["learned"] + seen["rejected"]
        if total >= expected:
            return now, seen
        if total != last:
            last, moved = total, time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            raise RuntimeError(f"stuck at {total:.0f} of {expected} labels taught")
        time.sleep(poll_s)


async def first_served(bootstrap: str, topic: str) -> float:
    """The earliest ``served_at`` among the first prediction of each partition."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    firsts: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 30
        while len(firsts) < PARTITIONS and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                if records:
                    firsts.setdefault(tp.partition, orjson.loads(records[0].value)["served_at"])
    finally:
        await consumer.stop()
    return min(firsts.values())


def run_row(
    bootstrap: str, row: str, workers: int, events: list[Any], workdir: Path, poll_s: float
) -> dict[str, Any]:
    """One row: start the group, wait for its assignment, produce, time until all is taught."""
    prefix = f"grp-{row.replace(' ', '')}-{workers}-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topic(bootstrap, f"{prefix}-features", PARTITIONS))
    procs = [start_worker(bootstrap, prefix, ROWS[row], workdir, n) for n in range(workers)]
    ports = [port for _, port in procs]
    try:
        for port in ports:
            wait_healthy(port, HEALTHY_S)
        assigned(ports)
        cpu = [cpu_seconds(proc.pid) for proc, _ in procs]
        produce_started = time.time()
        asyncio.run(prefill(bootstrap, f"{prefix}-features", events))
        produced = time.time() - produce_started
        each = 2 if ROWS[row].get("key_field") and ROWS[row].get("key_fallback") != "none" else 1
        end, seen = taught(ports, each * len(events), poll_s)
        cpu = [cpu_seconds(proc.pid) - before for (proc, _), before in zip(procs, cpu, strict=True)]
        start = asyncio.run(first_served(bootstrap, f"{prefix}-predictions"))
    except RuntimeError:
        for n in range(workers):  # the workers' own words, before the temporary directory goes
            log = (workdir / f"{prefix}-{n}.log").read_text(errors="replace")
            print(f"--- {prefix}-{n}.log (end)\n{log[-3000:]}", file=sys.stderr)
        raise
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(60)
    return {
        "row": row,
        "workers": workers,
        "seconds": end - start,
        "labels_per_s": len(events) / (end - start),
        "produce_s": produced,
        "worker_cpu_s": cpu,
        "labels_per_cpu_s": len(events) / sum(cpu),
        "labels_per_busiest_cpu_s": len(events) / max(cpu),
        "learned": int(seen["learned"]),
        "rejected": int(seen["rejected"]),
        "forwarded": int(seen["forwarded"]),
        "fallback_answers": int(seen["fallback"]),
    }


def baseline(rows: list[dict[str, Any]]) -> float:
    """labels/s of ``global`` with 1 worker (of the first row when that row was not run)."""
    ones = [r for r in rows if r["row"] == "global" and r["workers"] == 1]
    return float((ones or rows)[0]["labels_per_s"])


def print_table(report: dict[str, Any]) -> None:
    """The table for people."""
    rows = report["rows"]
    base = baseline(rows)
    print(
        f"\n{report['events']:,} labelled events, {report['keys']} keys ({KEY_FIELD}), "
        f"{PARTITIONS} partitions, shipped defaults (logistic regression, guard, drift challenger)"
    )
    head = f"{'row':32} {'labels/s':>9} {'x global-1':>10} {'labels/CPU-s':>12} {'busiest':>8}"
    print(f"{head} {'seconds':>7} {'produce s':>9} {'forwarded':>9} {'learned':>8} {'fallback':>8}")
    for r in rows:
        name = f"{r['row']}, {r['workers']} worker{'s' if r['workers'] > 1 else ''}"
        print(
            f"{name:32} {r['labels_per_s']:>9,.0f} {r['labels_per_s'] / base:>10.2f} "
            f"{r['labels_per_cpu_s']:>12,.0f} {r['labels_per_busiest_cpu_s']:>8,.0f} "
            f"{r['seconds']:>7.1f} {r['produce_s']:>9.1f} "
            f"{r['forwarded']:>9,} {r['learned']:>8,} {r['fallback_answers']:>8,}"
        )
    start, end = report["load_average_1min"]
    print(
        f"cores: {report['cores']}, shared by the broker, this bench's producer and the workers "
        f"(1-minute load average {start:.1f} at the start, {end:.1f} at the end)"
    )
    print(
        "what bounds labels/s here: CPU; two workers on these cores do not get a core each, so "
        "compare labels/CPU-s and busiest (events / CPU s of the busiest worker: the group's rate "
        "if each worker had a core of its own)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rows", default=",".join(ROWS), help="of: " + ", ".join(ROWS))
    parser.add_argument("--poll-s", type=float, default=0.1, help="how often /metrics is read")
    parser.add_argument("--broker", default=None, help="kafka://host:port (default: start one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.broker:
        os.environ["STREAM_APP_BROKER"] = args.broker
    events = make_events(args.events, args.keys)
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="stream-app-group-") as tmp:
        workdir = Path(tmp)
        with bench_broker(workdir) as bootstrap:
            for row in args.rows.split(","):
                for workers in (int(w) for w in args.workers.split(",")):
                    rows.append(run_row(bootstrap, row, workers, events, workdir, args.poll_s))
    for row in rows:
        row["x_global_1"] = row["labels_per_s"] / baseline(rows)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "events": args.events,
        "keys": args.keys,
        "cores": os.cpu_count(),
        "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
