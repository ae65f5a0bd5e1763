"""Helpers for the integration tier: a worker process, and Kafka as a user's client sees it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

WAIT_S = 60.0
POLL_S = 0.1


def faust_command() -> list[str]:
    """The command users run: ``faust -A stream_app.app worker -l info``."""
    return [sys.executable, "-m", "faust", "-A", "stream_app.app", "worker", "-l", "info"]


def stream_app_command() -> list[str]:
    """The same worker through our own CLI: ``stream-app worker``."""
    return [sys.executable, "-m", "stream_app", "worker", "-l", "info"]


@dataclass
class WorkerProcess:
    """One worker process started with its own app id, topics, web port and data dir."""

    app_id: str
    bootstrap: str
    web_port: int
    topics: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)
    stopping: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_healthy(self, timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.proc.returncode}:\n{self.log_text()[-5000:]}"
                )
            try:
                status, body = self.http("/health")
            except OSError:
                status, body = 0, b""
            if status == 200:
                return dict(orjson.loads(body))
            time.sleep(POLL_S)
        raise AssertionError(f"worker not healthy in {timeout}s:\n{self.log_text()[-5000:]}")

    def metrics(self) -> dict[str, float]:
        """Scrape /metrics into ``{'name{label="v"}': value}`` (samples, label-sorted)."""
        status, body = self.http("/metrics")
        assert status == 200, body
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def ask_to_stop(self) -> None:
        """Send SIGTERM once (a clean stop), without waiting: stop several workers at a time."""
        if self.proc.poll() is None and not self.stopping:
            self.proc.send_signal(signal.SIGTERM)
            self.stopping = True

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.ask_to_stop()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_worker(
    command: list[str],
    *,
    app_id: str,
    bootstrap: str,
    web_port: int,
    data_dir: Path,
    config: str,
    topics: dict[str, str],
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start a worker process whose settings come from env vars and a TOML file, as a user's do.

    ``env`` adds variables (e.g. ``STREAM_APP_SECURITY__SASL_PASSWORD``) to the worker's.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "config.toml"
    config_path.write_text(config)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")},
        **(env or {}),
        "STREAM_APP_BROKER": f"kafka://{bootstrap}",
        "STREAM_APP_ID": app_id,
        "STREAM_APP_WEB_PORT": str(web_port),
        "STREAM_APP_DATA_DIR": str(data_dir),
        "STREAM_APP_CONFIG": str(config_path),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = data_dir / "worker.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return WorkerProcess(app_id, bootstrap, web_port, topics, log_path, proc, env)


async def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Send (key, value) pairs as a user's producer would; return how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def wait_consumed(bootstrap: str, group: str, topic: str, timeout: float = WAIT_S) -> None:
    """Wait until ``group`` has committed every offset of ``topic``: all input was served."""
    targets = await end_offsets(bootstrap, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            if all(
                tp in committed and committed[tp].offset >= end
                for tp, end in targets.items()
                if end
            ):
                return
            await asyncio.sleep(POLL_S)
        raise AssertionError(
            f"{group} did not consume {topic} in {timeout}s: {committed} < {targets}"
        )
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, timeout: float = WAIT_S) -> list[Any]:
    """Every record now in ``topic``, partition by partition, up to the current end offsets."""
    ends = await end_offsets(bootstrap, topic)
    wanted = [tp for tp, end in ends.items() if end > 0]
    records: list[Any] = []
    if not wanted:  # (stopping an aiokafka consumer that never had an assignment can raise)
        return records
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        deadline = time.monotonic() + timeout
        remaining = set(wanted)
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=200)
            for tp, items in batch.items():
                records.extend(r for r in items if r.offset < ends[tp])
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        assert not remaining, f"could not read {topic} to its end in {timeout}s"
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def read_registry(bootstrap: str, app_id: str) -> Any:
    """The model registry as a worker sees it: its changelog topic applied in order."""
    from stream_app.registry.records import Registry, changelog_topic

    registry = Registry()
    for record in await read_all(bootstrap, changelog_topic(app_id)):
        registry.apply(record.key, record.value)
    return registry


async def wait_for(condition: Any, timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Await ``condition()`` (an async callable) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await condition()
        if result:
            return result
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def predictions_by_id(
    bootstrap: str, topic: str, prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """Every prediction in ``topic`` whose id starts with ``prefix``, by id (the latest wins)."""
    bodies = (orjson.loads(r.value) for r in await read_all(bootstrap, topic))
    return {body["id"]: body for body in bodies if body["id"].startswith(prefix)}
