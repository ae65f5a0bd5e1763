"""Side by side, one run, one broker: the River floor, a hand-written aiokafka loop, stream_app.

    python bench/run.py [--events 50000] [--factories logistic_regression,hoeffding_tree]
                        [--seconds 5] [--plot bench/latency.png] [--json]

Same events (15 numeric features, inline labels, seeded), same model factory:

(a) floor: the bare in-process River loop, predict_proba_one + learn_one, no Kafka;
(b) hand-written: getmany -> orjson -> predict_proba_one -> send -> learn_one, what a user writes;
(c) stream_app: the worker (``python -m stream_app worker``), event mode;
(d) stream_app in batch mode (``inference.mode = "batch"``).

The topics are prefilled, then each consumer drains them; events/s is measured from the first to
the last output's timestamp; the worker's RSS is read before and after. Then produce ->
prediction latency (p50, p99) of the worker, in both modes, at offered loads of 1k and 5k
events/s, drawn as a PNG. Starts its own broker unless STREAM_APP_BROKER is set. Prints a table
(or one JSON object); asserts nothing.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.broker import LocalKafka, free_port, free_ports
from stream_app.models import resolve_factory
from stream_app.settings import BrokerSettings

FEATURES = 15


def make_events(n: int, seed: int = 7) -> list[tuple[bytes, bytes, dict[str, float], bool]]:
    rng = random.Random(seed)
    weights = [rng.gauss(0, 1) for _ in range(FEATURES)]
    out = []
    for i in range(n):
        x = {f"f{k}": rng.gauss(0, 1) for k in range(FEATURES)}
        y = sum(w * v for w, v in zip(weights, x.values(), strict=True)) + rng.gauss(0, 0.5) > 0
        body = orjson.dumps({"id": f"e-{i}", "features": x, "label": y})
        out.append((f"e-{i}".encode(), body, x, y))
    return out


def floor(events: list[Any], factory: str) -> float:
    """(a) events/s of the model alone."""
    model = resolve_factory(factory)()
    started = time.perf_counter()
    for _, _, x, y in events:
        model.predict_proba_one(x)
        model.learn_one(x, y)
    return len(events) / (time.perf_counter() - started)


async def prefill(bootstrap: str, topic: str, events: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        for key, value, _, _ in events:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def hand_written(bootstrap: str, topic: str, out: str, n: int, factory: str) -> float:
    """(b) the loop a user would write: returns events/s from first to last output."""
    model = resolve_factory(factory)()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"hand-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        fetch_max_wait_ms=5,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await consumer.start()
    await producer.start()
    done, first, last = 0, 0.0, 0.0
    try:
        while done < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    x = event["features"]
                    proba = model.predict_proba_one(x)
                    await producer.send(
                        out,
                        orjson.dumps(
                            {"id": event["id"], "proba": {str(k): v for k, v in proba.items()}}
                        ),
                        key=record.key,
                    )
                    model.learn_one(x, event["label"])
                    done += 1
                    last = time.perf_counter()
                    first = first or last
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return n / (last - first)


def start_worker(
    bootstrap: str, prefix: str, factory: str, workdir: Path, mode: str = "event"
) -> tuple[Any, int]:
    """A worker process on its own topics (1 partition) in the given inference mode; its port."""
    port = free_port()
    config = workdir / f"{prefix}.toml"
    keys = [
        "features",
        "predictions",
        "labels",
        "dead_letters",
        "model_events",
        "predictions_shadow",
    ]
    topics = "".join(f'{key} = "{prefix}-{key}"\n' for key in keys)
    config.write_text(
        f"[topics]\npartitions = 1\n{topics}"
        f'[model]\nfactory = "stream_app.models:{factory}"\n'
        '[guard]\nenabled = false\n[drift]\npolicy = "none"\n'
        f'[inference]\nmode = "{mode}"\n'
    )
    env = {
        **os.environ,
        "STREAM_APP_BROKER": f"kafka://{bootstrap}",
        "STREAM_APP_ID": prefix,
        "STREAM_APP_WEB_PORT": str(port),
        "STREAM_APP_DATA_DIR": str(workdir / prefix),
        "STREAM_APP_CONFIG": str(config),
    }
    with open(workdir / f"{prefix}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "-l", "warn"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def stream_app_worker(
    bootstrap: str, prefix: str, n: int, factory: str, workdir: Path, mode: str
) -> tuple[float, int, int]:
    """(c, d) the worker draining a prefilled topic: events/s from its outputs' served_at, and
    its RSS in bytes once ready (before) and after the drain."""
    proc, port = start_worker(bootstrap, prefix, factory, workdir, mode)
    try:
        wait_healthy(port)
        before = rss(proc.pid)
        rate = asyncio.run(_drain_predictions(bootstrap, f"{prefix}-predictions", n))
        return rate, before, rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)


def rss(pid: int) -> int:
    """Resident set size of a process in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _drain_predictions(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    first = last = 0.0
    seen = 0
    deadline = time.monotonic() + 600
    try:
        while seen < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    served_at = orjson.loads(record.value)["served_at"]
                    first = first or served_at
                    last = served_at
                    seen += 1
    finally:
        await consumer.stop()
    if seen < n:
        raise RuntimeError(f"only {seen} of {n} predictions arrived")
    return n / (last - first)


def wait_healthy(port: int, timeout: float = 90.0) -> None:
    """Poll the worker's /health until it answers 200 (503 and refusals mean: not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{port}/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"worker on port {port} not healthy in {timeout:.0f}s")


def latency(
    bootstrap: str,
    prefix: str,
    factory: str,
    workdir: Path,
    rate: float,
    seconds: float,
    mode: str,
) -> dict[str, Any]:
    """p50/p99 produce -> prediction (ms) at an offered load of ``rate`` events/s."""
    proc, port = start_worker(bootstrap, prefix, factory, workdir, mode)
    try:
        wait_healthy(port)
        return {"mode": mode, **asyncio.run(_offered_load(bootstrap, prefix, rate, seconds))}
    finally:
        proc.terminate()
        proc.wait(60)


async def _offered_load(
    bootstrap: str, prefix: str, rate: float, seconds: float
) -> dict[str, float]:
    events = make_events(int(rate * seconds), seed=9)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    consumer = AIOKafkaConsumer(
        f"{prefix}-predictions",
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        fetch_max_wait_ms=5,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)

    async def read() -> None:
        while len(latencies) < len(events):
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    latencies.append(now - sent[orjson.loads(record.value)["id"]])

    reader = asyncio.create_task(read())
    started = time.perf_counter()
    for i, (key, value, _, _) in enumerate(events):
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)  # the offered load's own pace
        sent[key.decode()] = time.perf_counter()
        await producer.send(f"{prefix}-features", value, key=key)
    await asyncio.wait_for(reader, timeout=60)
    await producer.stop()
    await consumer.stop()
    ordered = sorted(latencies)
    return {
        "rate": rate,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[int(len(ordered) * 0.99)],
    }


def run_factory(
    bootstrap: str, factory: str, events: list[Any], workdir: Path, seconds: float
) -> dict[str, Any]:
    """Every path for one model factory: throughput, RSS, latency at 1k and 5k events/s."""
    path = f"stream_app.models:{factory}"
    results = {"floor": floor(events, path)}
    tag = uuid.uuid4().hex[:6]
    asyncio.run(prefill(bootstrap, f"hand-{tag}", events))
    results["hand_written"] = asyncio.run(
        hand_written(bootstrap, f"hand-{tag}", f"hand-{tag}-out", len(events), path)
    )
    memory: dict[str, dict[str, int]] = {}
    for mode in ("event", "batch"):
        prefix = f"sa{mode}-{tag}"
        asyncio.run(prefill(bootstrap, f"{prefix}-features", events))
        rate, before, after = stream_app_worker(
            bootstrap, prefix, len(events), factory, workdir, mode
        )
        results[f"stream_app_{mode}"] = rate
        memory[mode] = {"rss_before": before, "rss_after": after}
    loads = [
        latency(bootstrap, f"lat{mode}{int(r)}-{tag}", factory, workdir, r, seconds, mode)
        for mode in ("event", "batch")
        for r in (1000.0, 5000.0)
    ]
    return {
        "factory": factory,
        "events_per_s": results,
        "us_per_event": {k: 1e6 / v for k, v in results.items()},
        "ratio_to_floor": {k: v / results["floor"] for k, v in results.items()},
        "ratio_to_hand_written": {k: v / results["hand_written"] for k, v in results.items()},
        "rss": memory,
        "latency": loads,
    }


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    """Latency percentiles against offered load, one panel per factory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(6 * len(reports), 4), squeeze=False)
    for ax, report in zip(axes[0], reports, strict=True):
        for mode, color in (("event", "tab:blue"), ("batch", "tab:orange")):
            loads = [x for x in report["latency"] if x["mode"] == mode]
            rates = [x["rate"] for x in loads]
            ax.plot(rates, [x["p50_ms"] for x in loads], "o-", color=color, label=f"{mode} p50")
            ax.plot(rates, [x["p99_ms"] for x in loads], "s--", color=color, label=f"{mode} p99")
        ax.axhline(5, color="grey", lw=0.8, ls=":", label="target p50 5 ms")
        ax.axhline(25, color="grey", lw=0.8, ls="-.", label="target p99 25 ms")
        ax.set(
            title=f"produce -> prediction, {report['factory']}",
            xlabel="offered load (events/s)",
            ylabel="latency (ms, log)",
            yscale="log",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_report(report: dict[str, Any], n: int) -> None:
    """One factory's table for people."""
    results = report["events_per_s"]
    print(f"\n{n} events of {FEATURES} features, inline labels, {report['factory']}")
    print(f"{'path':18} {'events/s':>10} {'us/event':>9} {'x floor':>8} {'x hand':>7}")
    for name, rate in results.items():
        print(
            f"{name:18} {rate:>10,.0f} {1e6 / rate:>9.1f} {rate / results['floor']:>8.2f} "
            f"{rate / results['hand_written']:>7.2f}"
        )
    for mode, mem in report["rss"].items():
        grown = (mem["rss_after"] - mem["rss_before"]) / 2**20
        print(
            f"worker RSS ({mode}): {mem['rss_before'] / 2**20:.0f} MB ready, "
            f"{mem['rss_after'] / 2**20:.0f} MB after {n} events ({grown:+.0f} MB)"
        )
    for load in report["latency"]:
        print(
            f"{load['mode']:5} mode, offered {load['rate']:,.0f} events/s: produce -> prediction "
            f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms"
        )


@contextlib.contextmanager
def bench_broker(workdir: Path) -> Iterator[str]:
    """The broker in ``STREAM_APP_BROKER``, or a local one started here; yield its bootstrap."""
    bootstrap = os.environ.get("STREAM_APP_BROKER", "").removeprefix("kafka://")
    if bootstrap:
        yield bootstrap
        return
    port, controller = free_ports(2)
    broker = LocalKafka(
        BrokerSettings(controller_port=controller), workdir / "kafka", port=port, partitions=1
    )
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--factories", default="logistic_regression,hoeffding_tree")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each latency run")
    parser.add_argument("--plot", type=Path, default=Path("bench/latency.png"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    events = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="stream-app-bench-") as tmp:
        workdir = Path(tmp)
        with bench_broker(workdir) as bootstrap:
            reports = [
                run_factory(bootstrap, factory, events, workdir, args.seconds)
                for factory in args.factories.split(",")
            ]
    plot(reports, args.plot)
    if args.json:
        print(json.dumps({"events": args.events, "plot": str(args.plot), "factories": reports}))
        return 0
    for report in reports:
        print_report(report, args.events)
    print(f"\nlatency plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
