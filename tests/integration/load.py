"""Load drivers shared by the soak and backpressure tests and their bench/ scripts.

``soak`` streams events with delayed labels through a worker, paced so that each chunk's labels
follow its events once they are served; ``flood`` sends events as fast as Kafka takes them. Both
sample the worker's /metrics and RSS as they go and return what they saw; they assert nothing, so
a test asserts behaviour on the result and a bench script prints figures from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.tools.broker import LocalKafka, free_port, free_ports
from stream_app.tools.settings import BrokerSettings
from tests.integration.conftest import make_names
from tests.integration.support import (
    WorkerProcess,
    end_offsets,
    faust_command,
    produce,
    start_worker,
    wait_consumed,
    wait_for,
)

FEATURES = 8
NEW_NAMES_PER_EVENT = 2
"""With ``cardinality="unique"``: new feature names each event carries, beside its new string."""
CARDINALITIES = ("numeric", "unique")


@dataclass
class Observed:
    """What a load run saw of the worker, sample by sample."""

    events: int = 0
    labels: int = 0
    seconds: float = 0.0
    """From the first event sent to the last one served (committed)."""
    rss_kb: list[tuple[int, int]] = field(default_factory=list)
    """(events served, worker RSS in kB) at each sample."""
    pending: list[float] = field(default_factory=list)
    """``stream_app_pending_events`` at each sample."""
    lag: list[float] = field(default_factory=list)
    """Sum of ``stream_app_consumer_lag`` over the features partitions at each sample."""
    errors: list[str] = field(default_factory=list)
    """ERROR lines the worker logged during the run (after it was healthy)."""
    send_seconds: float = 0.0
    """How long the producer took to send every event (acknowledged)."""
    model_features: list[float] = field(default_factory=list)
    """``stream_app_model_features`` (inputs the serving model tracks) at each sample."""
    model_bytes: list[float] = field(default_factory=list)
    """``stream_app_model_bytes`` (its last checkpoint's size) at each sample."""

    def rss_at(self, served: int) -> int:
        """RSS (kB) at the first sample with at least ``served`` events served (else the last)."""
        return next((kb for n, kb in self.rss_kb if n >= served), self.rss_kb[-1][1])

    def at(self, series: list[float], served: int) -> float:
        """A sampled series' value at the first sample with at least ``served`` events served."""
        return next(
            (v for (n, _), v in zip(self.rss_kb, series, strict=True) if n >= served), series[-1]
        )


def rss_kb(pid: int) -> int:
    """Resident set size of a process, in kB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def error_lines(worker: WorkerProcess, since: int = 0) -> list[str]:
    """The worker's log lines at level ERROR (or CRITICAL), from line ``since`` on.

    (aiokafka logs a few transient ERRORs while a worker starts on a fresh broker or topics: the
    group coordinator not available yet, topics just created not in metadata yet.)
    """
    lines = worker.log_text().splitlines()[since:]
    return [ln for ln in lines if "[ERROR]" in ln or "[CRITICAL]" in ln]


def log_length(worker: WorkerProcess) -> int:
    """Lines in the worker's log so far (to count errors from now on)."""
    return len(worker.log_text().splitlines())


def event(i: int, rng: random.Random, cardinality: str = "numeric") -> tuple[bytes, bytes, bool]:
    """One seeded event (key, value) and its true label.

    ``numeric``: :data:`FEATURES` numbers. ``unique``: also a string never seen before (a user
    id) and :data:`NEW_NAMES_PER_EVENT` feature names never seen before.
    """
    x: dict[str, float | str] = {f"f{k}": rng.gauss(0, 1) for k in range(FEATURES)}
    y = x["f0"] + 0.5 * x["f1"] - x["f2"] + rng.gauss(0, 0.3) > 0  # type: ignore[operator]
    if cardinality == "unique":
        x["user"] = f"u-{i}"
        x.update({f"n{i}-{k}": 1.0 for k in range(NEW_NAMES_PER_EVENT)})
    return f"e-{i}".encode(), orjson.dumps({"id": f"e-{i}", "features": x}), y


async def sample(worker: WorkerProcess, served: int, observed: Observed, features: str) -> None:
    """Record the worker's RSS, pending store size and features lag now."""
    scraped = await asyncio.to_thread(worker.metrics)
    observed.rss_kb.append((served, rss_kb(worker.proc.pid)))
    observed.pending.append(scraped.get("stream_app_pending_events", 0.0))
    observed.model_features.append(scraped.get("stream_app_model_features", 0.0))
    observed.model_bytes.append(scraped.get("stream_app_model_bytes", 0.0))
    prefix = 'stream_app_consumer_lag{partition="'
    observed.lag.append(
        sum(v for k, v in scraped.items() if k.startswith(prefix) and f'topic="{features}"' in k)
    )


async def soak(
    worker: WorkerProcess,
    bootstrap: str,
    events: int,
    *,
    chunk: int = 10_000,
    label_share: float = 0.8,
    label_after_chunks: int = 2,
    seed: int = 13,
    first: int = 0,
    cardinality: str = "numeric",
    progress: Callable[[str], None] | None = None,
) -> Observed:
    """Send ``events`` in chunks; label ``label_share`` of each chunk once it was served.

    Event ids start at ``first``; ``cardinality`` names their shape (see :func:`event`). A
    chunk's labels go out ``label_after_chunks`` chunks later, and only after the serve group
    committed past the chunk's last event on every partition, so each label finds its event
    served (the rest stay unlabeled and age out of the bounded pending store).
    """
    features, labels = worker.topics["features"], worker.topics["labels"]
    group = f"{worker.app_id}-serve"
    rng = random.Random(seed)
    observed = Observed()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await producer.start()
    await admin.start()
    ends_after: list[dict[TopicPartition, int]] = []
    truth: list[list[tuple[bytes, bool]]] = []
    since = log_length(worker)
    started = time.monotonic()
    try:
        for k in range((events + chunk - 1) // chunk):
            ids = range(first + k * chunk, first + min((k + 1) * chunk, events))
            batch = [event(i, rng, cardinality) for i in ids]
            await asyncio.gather(
                *[await producer.send(features, v, key=key) for key, v, _ in batch]
            )
            observed.events += len(batch)
            ends_after.append(await end_offsets(bootstrap, features))
            truth.append([(key, y) for key, _, y in batch])
            if k >= label_after_chunks:
                j = k - label_after_chunks
                observed.labels += await _label(
                    producer, admin, group, labels, ends_after[j], truth[j], label_share, rng
                )
            await sample(worker, await _served(admin, group, features), observed, features)
            if progress is not None:
                progress(f"{observed.events} sent, RSS {observed.rss_kb[-1][1] / 1024:.0f} MB")
        for j in range(max(len(truth) - label_after_chunks, 0), len(truth)):
            observed.labels += await _label(
                producer, admin, group, labels, ends_after[j], truth[j], label_share, rng
            )
        await wait_consumed(bootstrap, group, features, timeout=600)
        observed.seconds = time.monotonic() - started
        await wait_consumed(bootstrap, group, labels, timeout=600)
        await sample(worker, events, observed, features)
        observed.errors = error_lines(worker, since)
    finally:
        await admin.close()
        await producer.stop()
    return observed


async def _served(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    """Events the serve group has committed (served and acknowledged) on ``topic``."""
    committed = await admin.list_consumer_group_offsets(group)
    return sum(o.offset for tp, o in committed.items() if tp.topic == topic and o.offset > 0)


async def _label(
    producer: AIOKafkaProducer,
    admin: AIOKafkaAdminClient,
    group: str,
    topic: str,
    ends: dict[TopicPartition, int],
    truth: list[tuple[bytes, bool]],
    share: float,
    rng: random.Random,
) -> int:
    """Once the group committed past ``ends`` everywhere, send labels for ``share`` of ``truth``."""

    async def served() -> bool:
        committed = await admin.list_consumer_group_offsets(group)
        return all(tp in committed and committed[tp].offset >= end for tp, end in ends.items())

    await wait_for(served, what=f"{group} to serve a chunk before its labels")
    chosen = [(key, y) for key, y in truth if rng.random() < share]
    futures = [
        await producer.send(topic, orjson.dumps({"id": key.decode(), "label": y}), key=key)
        for key, y in chosen
    ]
    await asyncio.gather(*futures)
    return len(chosen)


async def flood(
    worker: WorkerProcess,
    bootstrap: str,
    events: int,
    *,
    sample_s: float = 0.2,
    timeout: float = 600.0,
    seed: int = 17,
) -> Observed:
    """Send ``events`` as fast as Kafka takes them; sample the worker until it served them all."""
    features = worker.topics["features"]
    group = f"{worker.app_id}-serve"
    rng = random.Random(seed)
    batch = [event(i, rng)[:2] for i in range(events)]
    observed = Observed(events=events)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    since = log_length(worker)
    started = time.monotonic()
    sending = asyncio.create_task(produce(bootstrap, features, batch))
    sending.add_done_callback(
        lambda _: setattr(observed, "send_seconds", time.monotonic() - started)
    )
    try:
        deadline = started + timeout
        served = 0
        while not (sending.done() and served >= events):
            if time.monotonic() > deadline:
                raise AssertionError(f"{group} served {served} of {events} in {timeout:.0f}s")
            if sending.done():
                await sending  # raises if the producer failed
            served = await _served(admin, group, features)
            await sample(worker, served, observed, features)
            await asyncio.sleep(sample_s)  # the sampling period, not a wait for a condition
        observed.seconds = time.monotonic() - started
        observed.errors = error_lines(worker, since)
    finally:
        if not sending.done():
            sending.cancel()
        await admin.close()
    return observed


@contextlib.contextmanager
def bench_worker(
    workdir: Path, extra_config: str = "", serve: str = ""
) -> Iterator[tuple[WorkerProcess, str]]:
    """For bench/ scripts: a broker (``STREAM_APP_BROKER`` or a local one), one healthy worker."""
    bootstrap = os.environ.get("STREAM_APP_BROKER", "").removeprefix("kafka://")
    with contextlib.ExitStack() as stack:
        if not bootstrap:
            port, controller = free_ports(2)
            broker = LocalKafka(
                BrokerSettings(controller_port=controller), workdir / "kafka", port=port
            )
            broker.start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
        names = make_names("bench")
        worker = start_worker(
            faust_command(),
            app_id=names.app_id,
            bootstrap=bootstrap,
            web_port=free_port(),
            data_dir=workdir / "worker",
            config=names.toml(4, extra_config, serve),
            topics=names.topics,
        )
        stack.callback(worker.stop)
        worker.wait_healthy(timeout=120)
        yield worker, bootstrap
