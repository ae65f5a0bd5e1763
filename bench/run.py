"""Side by side, one run, one broker: the River floor, a hand-written aiokafka loop, stream_app.

    python bench/run.py [--events 50000] [--factories logistic_regression,hoeffding_tree]
                        [--configs defaults,features_off] [--modes event,batch]
                        [--rates 1000,5000] [--seconds 5] [--plot bench/latency.png] [--json]

Same events (15 numeric features, inline labels, seeded), same model factory:

(a) floor: the bare in-process River loop, predict_proba_one + learn_one, no Kafka;
(b) hand-written: getmany -> orjson -> predict_proba_one -> send -> learn_one, what a competent
    engineer writes (batched fetch, one send per event, no guard, no drift check, no DLQ);
(c) stream_app ``defaults``: the worker (``python -m stream_app worker``) with the shipped
    config/default.toml as it is (4 partitions, guard with witness, drift policy ``challenger``);
(d) stream_app ``features_off``: guard off, drift policy none, 1 partition;

each of (c) and (d) in event mode and in batch mode (``inference.mode = "batch"``). The topics are
prefilled, then each consumer drains them; events/s is measured from the first to the last
output's timestamp; the worker's RSS is read before and after. Then produce -> prediction
latency (p50, p99) of the worker, per configuration and mode, at offered loads of 1k and 5k
events/s, drawn as a PNG: by the records' timestamps (the event's and its prediction's, stamped by
their producers), and as this benchmark's consumer receives them (its own fetch wait added).
Starts its own broker unless STREAM_APP_BROKER is set. Prints a table (or one JSON object);
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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

from stream_app.kafka.topics import ensure_topics
from stream_app.models import resolve_factory
from stream_app.settings import Settings
from stream_app.tools.broker import LocalKafka, free_port, free_ports
from stream_app.tools.settings import BrokerSettings

FEATURES = 15
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


@dataclasses.dataclass
class Plan:
    """What to run besides the floor and the hand-written loop."""

    configs: list[str]
    modes: list[str]
    rates: list[float]
    seconds: float


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


CONFIGS: dict[str, tuple[int, str]] = {
    "defaults": (4, ""),
    "features_off": (1, '[guard]\nenabled = false\n[drift]\npolicy = "none"\n'),
}
"""Worker configurations: (partitions, TOML layered over config/default.toml). ``defaults`` is
what a user runs; ``features_off`` leaves out the guard and the drift check."""


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create ``name`` with ``partitions`` partitions before anything writes to it."""
    settings = Settings().replace(app={"broker": f"kafka://{bootstrap}"})
    await ensure_topics(settings, [name], partitions=partitions)


def start_worker(
    bootstrap: str,
    prefix: str,
    factory: str,
    workdir: Path,
    mode: str = "event",
    config: str = "features_off",
) -> tuple[Any, int]:
    """A worker process on its own topics, in a configuration of :data:`CONFIGS`; its port."""
    port = free_port()
    path = workdir / f"{prefix}.toml"
    keys = [
        "features",
        "predictions",
        "labels",
        "dead_letters",
        "model_events",
        "predictions_shadow",
    ]
    topics = "".join(f'{key} = "{prefix}-{key}"\n' for key in keys)
    partitions, overrides = CONFIGS[config]
    path.write_text(
        f"[topics]\npartitions = {partitions}\n{topics}"
        f'[model]\nfactory = "stream_app.models:{factory}"\n'
        f'[inference]\nmode = "{mode}"\n{overrides}'
    )
    env = {
        **os.environ,
        "STREAM_APP_BROKER": f"kafka://{bootstrap}",
        "STREAM_APP_ID": prefix,
        "STREAM_APP_WEB_PORT": str(port),
        "STREAM_APP_DATA_DIR": str(workdir / prefix),
        "STREAM_APP_CONFIG": str(path),
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
    bootstrap: str, prefix: str, n: int, factory: str, workdir: Path, mode: str, config: str
) -> tuple[float, int, int]:
    """(c, d) the worker draining a prefilled topic: events/s from its outputs' served_at, and
    its RSS in bytes once ready (before) and after the drain."""
    proc, port = start_worker(bootstrap, prefix, factory, workdir, mode, config)
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
    config: str,
) -> dict[str, Any]:
    """p50/p99 produce -> prediction (ms) at an offered load of ``rate`` events/s."""
    asyncio.run(create_topic(bootstrap, f"{prefix}-features", CONFIGS[config][0]))
    proc, port = start_worker(bootstrap, prefix, factory, workdir, mode, config)
    try:
        wait_healthy(port)
        load = asyncio.run(_offered_load(bootstrap, prefix, rate, seconds))
        return {"config": config, "mode": mode, **load}
    finally:
        proc.terminate()
        proc.wait(60)


async def _offered_load(
    bootstrap: str, prefix: str, rate: float, seconds: float
) -> dict[str, float]:
    """Offer ``rate`` events/s for ``seconds``; p50/p99 of produce -> prediction, two ways.

    ``p50_ms``/``p99_ms``: the prediction record's timestamp minus its event record's (both
    CreateTime, stamped by the producing client when it sends: the issue's "broker timestamps of
    the event and its prediction"). ``*_received_ms``: from the event's send to this consumer
    holding its prediction, which adds this consumer's own fetch wait.
    """
    events = make_events(int(rate * seconds), seed=9)
    sent: dict[str, float] = {}
    received: dict[str, tuple[float, int]] = {}
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
        while len(received) < len(events):
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    received[orjson.loads(record.value)["id"]] = (now, record.timestamp)

    reader = asyncio.create_task(read())
    started = time.perf_counter()
    acks = []
    for i, (key, value, _, _) in enumerate(events):
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)  # the offered load's own pace
        sent[key.decode()] = time.perf_counter()
        acks.append((key.decode(), await producer.send(f"{prefix}-features", value, key=key)))
    await asyncio.wait_for(reader, timeout=60)
    stamped = {event_id: (await ack).timestamp for event_id, ack in acks}
    await producer.stop()
    await consumer.stop()
    by_stamps = sorted((received[i][1] - stamped[i]) / 1000 for i in received)
    to_consumer = sorted(received[i][0] - sent[i] for i in received)
    return {
        "rate": rate,
        "p50_ms": 1000 * by_stamps[len(by_stamps) // 2],
        "p99_ms": 1000 * by_stamps[int(len(by_stamps) * 0.99)],
        "p50_received_ms": 1000 * to_consumer[len(to_consumer) // 2],
        "p99_received_ms": 1000 * to_consumer[int(len(to_consumer) * 0.99)],
    }


def run_factory(
    bootstrap: str,
    factory: str,
    events: list[Any],
    workdir: Path,
    plan: Plan,
) -> dict[str, Any]:
    """Every path for one model factory: throughput, RSS, latency at the offered loads."""
    path = f"stream_app.models:{factory}"
    results = {"floor": floor(events, path)}
    tag = uuid.uuid4().hex[:6]
    asyncio.run(create_topic(bootstrap, f"hand-{tag}", CONFIGS["defaults"][0]))
    asyncio.run(prefill(bootstrap, f"hand-{tag}", events))
    results["hand_written"] = asyncio.run(
        hand_written(bootstrap, f"hand-{tag}", f"hand-{tag}-out", len(events), path)
    )
    memory: dict[str, dict[str, int]] = {}
    for config in plan.configs:
        for mode in plan.modes:
            name = f"{config}_{mode}"
            prefix = f"sa{mode}-{config.replace('_', '')}-{tag}"
            asyncio.run(create_topic(bootstrap, f"{prefix}-features", CONFIGS[config][0]))
            asyncio.run(prefill(bootstrap, f"{prefix}-features", events))
            rate, before, after = stream_app_worker(
                bootstrap, prefix, len(events), factory, workdir, mode, config
            )
            results[name] = rate
            memory[name] = {"rss_before": before, "rss_after": after}
    loads = [
        latency(
            bootstrap,
            f"lat{mode}{config.replace('_', '')}{int(r)}-{tag}",
            factory,
            workdir,
            r,
            plan.seconds,
            mode,
            config,
        )
        for config in plan.configs
        for mode in plan.modes
        for r in plan.rates
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
        series = sorted({(x["config"], x["mode"]) for x in report["latency"]})
        for (config, mode), color in zip(series, COLORS, strict=False):
            loads = [x for x in report["latency"] if (x["config"], x["mode"]) == (config, mode)]
            rates = [x["rate"] for x in loads]
            name = f"{config} {mode}"
            ax.plot(rates, [x["p50_ms"] for x in loads], "o-", color=color, label=f"{name} p50")
            ax.plot(rates, [x["p99_ms"] for x in loads], "s--", color=color, label=f"{name} p99")
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
    print(f"{'path':20} {'events/s':>10} {'us/event':>9} {'x floor':>8} {'x hand':>7}")
    for name, rate in results.items():
        print(
            f"{name:20} {rate:>10,.0f} {1e6 / rate:>9.1f} {rate / results['floor']:>8.2f} "
            f"{rate / results['hand_written']:>7.2f}"
        )
    for name, mem in report["rss"].items():
        grown = (mem["rss_after"] - mem["rss_before"]) / 2**20
        print(
            f"worker RSS ({name}): {mem['rss_before'] / 2**20:.0f} MB ready, "
            f"{mem['rss_after'] / 2**20:.0f} MB after {n} events ({grown:+.0f} MB)"
        )
    for load in report["latency"]:
        print(
            f"{load['config']} {load['mode']} mode, offered {load['rate']:,.0f} events/s: "
            f"produce -> prediction p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms "
            f"(to this consumer: p50 {load['p50_received_ms']:.1f}, "
            f"p99 {load['p99_received_ms']:.1f})"
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
    parser.add_argument("--configs", default=",".join(CONFIGS), help="of: " + ", ".join(CONFIGS))
    parser.add_argument("--modes", default="event,batch")
    parser.add_argument("--rates", default="1000,5000", help="offered loads for latency (events/s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each latency run")
    parser.add_argument("--plot", type=Path, default=Path("bench/latency.png"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    events = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="stream-app-bench-") as tmp:
        workdir = Path(tmp)
        with bench_broker(workdir) as bootstrap:
            plan = Plan(
                configs=args.configs.split(","),
                modes=args.modes.split(","),
                rates=[float(r) for r in args.rates.split(",") if r],
                seconds=args.seconds,
            )
            reports = [
                run_factory(bootstrap, factory, events, workdir, plan)
                for factory in args.factories.split(",")
            ]
    if plan.rates:
        plot(reports, args.plot)
    if args.json:
        command = " ".join(["python", *sys.argv])
        print(
            json.dumps(
                {
                    "command": command,
                    "events": args.events,
                    "plot": str(args.plot),
                    "factories": reports,
                }
            )
        )
        return 0
    for report in reports:
        print_report(report, args.events)
    if plan.rates:
        print(f"\nlatency plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
