"""``stream-app demo``: a local broker, one worker, a seeded synthetic stream and a live view.

The stream is River's SEA generator with a concept change halfway, a categorical feature, inline
labels, and a few percent of malformed messages, so that every part of the service shows itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.broker import LocalKafka, free_port, free_ports
from stream_app.errors import StreamAppError
from stream_app.security import client_kwargs
from stream_app.settings import Settings

__all__ = ["DemoOptions", "demo_stream", "run_demo"]

BAD_MESSAGES: Final = (
    b'{"id": "broken", "features": {"x1": 1.0',
    b'["not", "an", "object"]',
    b'{"features": {"x1": 1.0}}',
    b'{"id": "nan", "features": {"x1": NaN}}',
    b'{"id": "nested", "features": {"x1": {"deep": 1}}}',
    b"\xff\xfe not utf-8",
)
_HEALTH_TIMEOUT_S: Final = 90.0
_VIEW_EVERY_S: Final = 1.0
_DRAIN_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults are what ``make demo`` runs."""

    broker: str | None = None
    """Use this broker (``kafka://host:port``) instead of starting one."""
    events: int = 0
    """Stop after this many events; 0 runs until Ctrl-C."""
    rate: float = 500.0
    """Events per second offered."""
    bad_share: float = 0.03
    seed: int = 42


def demo_stream(seed: int, bad_share: float) -> Iterator[tuple[bytes | None, bytes]]:
    """Yield (key, value) messages: SEA events with a concept change at 5,000, some malformed.

    >>> stream = demo_stream(seed=1, bad_share=0.0)
    >>> key, value = next(stream)
    >>> key, sorted(orjson.loads(value)["features"])
    (b'ev-0', ['channel', 'x1', 'x2', 'x3'])
    """
    from river.datasets import synth

    rng = random.Random(seed)  # noqa: S311 - a seeded demo stream, not a secret
    change_at = 5000
    before, after = synth.SEA(variant=0, seed=seed), synth.SEA(variant=2, seed=seed + 1)
    for i, ((x_old, y_old), (x_new, y_new)) in enumerate(zip(before, after, strict=True)):
        if rng.random() < bad_share:
            yield None, rng.choice(BAD_MESSAGES)
        x, y = (x_old, y_old) if i < change_at else (x_new, y_new)
        features: dict[str, Any] = {f"x{k + 1}": float(v) for k, v in x.items()}
        features["channel"] = rng.choice(["web", "app", "store"])
        event = {"id": f"ev-{i}", "features": features, "ts": time.time(), "label": bool(y)}
        yield f"ev-{i}".encode(), orjson.dumps(event)


@dataclass
class _Tally:
    """What the view shows, updated by the consumer task."""

    produced: int = 0
    predictions: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    versions: set[int] = field(default_factory=set)
    checkpoints: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        """One status line for people."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        recent = sorted(self.latencies[-2000:])
        p50 = recent[len(recent) // 2] if recent else 0.0
        p99 = recent[int(len(recent) * 0.99)] if recent else 0.0
        letters = ", ".join(f"{r}={n}" for r, n in sorted(self.dead_letters.items())) or "none"
        return (
            f"{elapsed:6.1f}s  in {self.produced:>7}  out {self.predictions:>7} "
            f"({self.predictions / elapsed:7.0f}/s)  latency p50 {p50:6.2f} ms p99 {p99:6.2f} ms  "
            f"versions {sorted(self.versions)}  checkpoints {self.checkpoints}  "
            f"dead letters: {letters}"
        )


def run_demo(settings: Settings, options: DemoOptions) -> int:
    """Run the demo to its end (``events``) or Ctrl-C; print a summary; return an exit code."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-app-demo-")))
        broker_url = options.broker or os.environ.get("STREAM_APP_BROKER")
        if not broker_url:
            port, controller_port = free_ports(2)
            broker = LocalKafka(
                dataclasses.replace(settings.broker, controller_port=controller_port),
                workdir / "kafka",
                port=port,
                partitions=settings.topics.partitions,
            )
            print(f"starting a local Kafka broker on {broker.bootstrap} ...", flush=True)
            broker.start()
            stack.callback(broker.stop)
            broker_url = broker.url
            print(f"broker ready on {broker.bootstrap}", flush=True)
        worker, web_port = _start_worker(settings, broker_url, workdir)
        stack.callback(_stop, worker)
        _wait_healthy(worker, web_port)
        print(f"worker ready: http://127.0.0.1:{web_port}/metrics", flush=True)
        tally = _Tally()
        try:
            asyncio.run(_stream(settings, broker_url.removeprefix("kafka://"), options, tally))
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
        print("summary: " + tally.line(), flush=True)
        return 0 if tally.predictions > 0 else 1
    return 1


def _start_worker(
    settings: Settings, broker_url: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``stream-app worker`` as a child process, logging to a file in the work dir."""
    web_port = free_port()
    env = {
        **os.environ,
        "STREAM_APP_BROKER": broker_url,
        "STREAM_APP_ID": f"stream-app-demo-{os.getpid()}",
        "STREAM_APP_WEB_PORT": str(web_port),
        "STREAM_APP_DATA_DIR": str(workdir / "worker"),
    }
    log = open(workdir / "worker.log", "ab")  # noqa: SIM115 - closed by _stop via the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_app", "worker", "-l", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc, web_port


def _wait_healthy(proc: subprocess.Popen[bytes], web_port: int) -> None:
    """Wait for the worker's /health to answer 200."""
    deadline = time.monotonic() + _HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StreamAppError(f"the worker exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{web_port}/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise StreamAppError(f"the worker was not healthy within {_HEALTH_TIMEOUT_S:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the worker politely, then firmly."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _stream(settings: Settings, bootstrap: str, options: DemoOptions, tally: _Tally) -> None:
    """Produce the demo stream, read the outputs, and print the view until done."""
    connection = client_kwargs(settings.replace(app={"broker": f"kafka://{bootstrap}"}))
    producer = AIOKafkaProducer(**connection, linger_ms=5)
    consumer = AIOKafkaConsumer(
        settings.topics.predictions,
        settings.topics.dead_letters,
        settings.topics.model_events,
        **connection,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await producer.start()
    await consumer.start()
    try:
        reader = asyncio.create_task(_read(consumer, settings, tally))
        view = asyncio.create_task(_view(tally))
        await _produce(producer, settings.topics.features, options, tally)
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        while (
            options.events
            and tally.predictions + sum(tally.dead_letters.values()) < tally.produced
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.1)
        for task in (reader, view):
            task.cancel()
        await asyncio.gather(reader, view, return_exceptions=True)
    finally:
        await consumer.stop()
        await producer.stop()


async def _produce(
    producer: AIOKafkaProducer, topic: str, options: DemoOptions, tally: _Tally
) -> None:
    """Send the stream at the offered rate, until ``options.events`` (or forever)."""
    started = time.monotonic()
    for key, value in demo_stream(options.seed, options.bad_share):
        if options.events and tally.produced >= options.events:
            break
        await producer.send(topic, value, key=key)
        tally.produced += 1
        ahead = tally.produced / options.rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    await producer.flush()


async def _read(consumer: AIOKafkaConsumer, settings: Settings, tally: _Tally) -> None:
    """Count predictions and dead letters as they arrive."""
    while True:
        batches = await consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            for record in records:
                body = orjson.loads(record.value)
                if tp.topic == settings.topics.predictions:
                    tally.predictions += 1
                    tally.latencies.append(body["latency_ms"])
                    tally.versions.add(body["model_version"])
                elif tp.topic == settings.topics.model_events:
                    _announce(body, tally)
                else:
                    tally.dead_letters[body["reason"]] += 1
        del tally.latencies[:-10000]


def _announce(event: dict[str, Any], tally: _Tally) -> None:
    """Print a model event as it happens: drift, promotion, rollback...; count checkpoints.

    >>> _announce({"type": "drift", "model_version": 0, "examples_seen": 5120,
    ...            "detector": "ADWIN"}, _Tally())
      >> drift: the error of v0 went up after 5,120 labels (ADWIN)
    """
    kind, version = event.get("type"), event.get("model_version")
    if kind == "checkpoint":
        tally.checkpoints += 1
        return
    if kind == "drift":
        print(
            f"  >> drift: the error of v{version} went up after "
            f"{event.get('examples_seen', 0):,} labels ({event.get('detector')})",
            flush=True,
        )
    elif kind == "promotion":
        print(
            f"  >> v{version} now serves (was v{event.get('previous_version')}, "
            f"{event.get('reason')})",
            flush=True,
        )
    else:
        print(f"  >> {kind}: v{version}", flush=True)


async def _view(tally: _Tally) -> None:
    """Print the status line once a second."""
    while True:
        await asyncio.sleep(_VIEW_EVERY_S)
        print(tally.line(), flush=True)
