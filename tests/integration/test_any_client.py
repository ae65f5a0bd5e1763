"""A label finds its event whatever client produced them and whichever path served it.

Producers do not agree on where a key goes: aiokafka (and Java) hash keys with murmur2, librdkafka
(kcat, confluent-kafka) with CRC32, and some producers name the partition. Here real clients of
each kind write the events and the labels, on one worker and on two, and every label is learned
exactly once. HTTP predictions, labels that come before their events, and a restart in between
are covered too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from stream_app.client import AsyncClient, Event, Label
from stream_app.core.route import home_partition
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import WorkerProcess, produce, wait_consumed, wait_for
from tests.integration.test_http import topics
from tests.integration.test_learning import sea
from tests.integration.test_scaling import partitions

PARTITIONS = 4
PER_PAIR = 200
NO_GUARD = "[guard]\nenabled = false\n[drift]\npolicy = 'none'\n"
CLIENTS = ("aiokafka", "librdkafka", "librdkafka-murmur2", "explicit")
"""How a producer picks the partition: murmur2, CRC32 (librdkafka's default), librdkafka set to
murmur2, and an explicit partition that neither hash gives."""

Message = tuple[bytes, bytes]


def librdkafka(bootstrap: str, topic: str, messages: Sequence[Message], **config: Any) -> None:
    """Produce with confluent-kafka (librdkafka), keyed, with its default or a given partitioner."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    failures: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    for key, value in messages:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0 and not failures, failures


async def produce_as(client: str, bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    """Write ``messages`` to ``topic`` the way ``client`` would."""
    if client == "aiokafka":
        await produce(bootstrap, topic, messages)
    elif client == "librdkafka":
        await asyncio.to_thread(librdkafka, bootstrap, topic, messages)
    elif client == "librdkafka-murmur2":
        await asyncio.to_thread(
            librdkafka, bootstrap, topic, messages, partitioner="murmur2_random"
        )
    else:  # explicit: a partition that is not the key's murmur2 one
        await asyncio.to_thread(_explicit, bootstrap, topic, messages)


def _explicit(bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in messages:
        away = (home_partition(key.decode(), PARTITIONS) + 1 + len(value) % 3) % PARTITIONS
        producer.produce(topic, value=value, key=key, partition=away)
    assert producer.flush(30) == 0


def pair_traffic(prefix: str, seed: int) -> tuple[list[Message], list[Message]]:
    """``PER_PAIR`` unlabelled events and their labels, ids starting with ``prefix``."""
    data = sea(PER_PAIR, seed=seed)
    events, labels = [], []
    for i, (x, y) in enumerate(data):
        event_id = f"{prefix}-{i}"
        events.append((event_id.encode(), orjson.dumps({"id": event_id, "features": x})))
        labels.append((event_id.encode(), orjson.dumps({"id": event_id, "label": y})))
    return events, labels


def learned(workers: Sequence[WorkerProcess]) -> Callable[[], Any]:
    """A condition: the labels learned across ``workers`` (the writer learns what others pass)."""

    async def total() -> float:
        return sum(w.metrics().get("stream_app_labels_learned_total", 0) for w in workers)

    return total


async def wait_learned(workers: Sequence[WorkerProcess], expected: int) -> None:
    """Wait until ``expected`` labels are learned, then check nothing else happened to labels."""
    count = learned(workers)

    async def all_learned() -> bool:
        return bool(await count() >= expected)

    await wait_for(all_learned, timeout=120, what=f"{expected} labels to be learned")
    scraped = [w.metrics() for w in workers]
    assert await count() == expected  # none learned twice
    rejected = {
        k: v for s in scraped for k, v in s.items() if k.startswith("stream_app_labels_rej")
    }
    assert not any(rejected.values()), rejected
    assert sum(s.get("stream_app_early_labels", 0) for s in scraped) == 0
    assert sum(s.get("stream_app_pending_events", 0) for s in scraped) == 0


async def start(worker_factory: WorkerFactory, count: int, extra: str = "") -> list[WorkerProcess]:
    """Start ``count`` workers of one group and wait until they share every partition."""
    workers = [worker_factory(partitions=PARTITIONS, extra_config=NO_GUARD + extra)]
    workers[0].wait_healthy()
    for _ in range(count - 1):
        workers.append(worker_factory(partitions=PARTITIONS, extra_config=NO_GUARD + extra))

    async def split() -> bool:
        owned = [partitions(w) for w in workers]
        return sorted(p for ps in owned for p in ps) == list(range(PARTITIONS)) and all(owned)

    await wait_for(split, timeout=90, what=f"{count} workers to share the partitions")
    return workers


@pytest.mark.parametrize("workers", [1, 2])
async def test_every_pair_of_producers_learns_every_label(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, workers: int
) -> None:
    """Events by one client, labels by another, every pair: 200 of 200 labels learned for each."""
    group = await start(worker_factory, workers)
    pairs = [(e, lab) for e in CLIENTS for lab in CLIENTS]
    traffic = {pair: pair_traffic(f"{pair[0]}.{pair[1]}", seed) for seed, pair in enumerate(pairs)}
    for (events_by, _), (events, _) in traffic.items():
        await produce_as(events_by, kafka.bootstrap, names.topics["features"], events)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    for (_, labels_by), (_, labels) in traffic.items():
        await produce_as(labels_by, kafka.bootstrap, names.topics["labels"], labels)
    await wait_learned(group, len(pairs) * PER_PAIR)
    rerouted = sum(w.metrics().get("stream_app_labels_rerouted_total", 0) for w in group)
    assert rerouted > 0  # the CRC32 and explicit producers' labels went through the join topic
    logs = "".join(w.log_text() for w in group)
    assert "partitioner=murmur2_random" in logs  # the worker said how to avoid the extra hop


@pytest.mark.parametrize("workers", [1, 2])
async def test_http_predictions_with_an_id_learn_their_labels_once(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, workers: int
) -> None:
    """POST /predict with an id, then POST /learn (to another worker where there are two)."""
    group = await start(worker_factory, workers)
    data = sea(PER_PAIR, seed=71)
    clients = [AsyncClient(w.url, kafka.bootstrap, topics=topics(names)) for w in group]
    try:
        for i, (x, _) in enumerate(data):
            answer = await clients[i % workers].predict(Event(x, id=f"h-{i}"))
            assert (answer.id, answer.joinable) == (f"h-{i}", True)
        for i, (_, y) in enumerate(data):
            await clients[(i + 1) % workers].learn(Label(f"h-{i}", y))
        anonymous = await clients[0].predict(Event(data[0][0]))
        assert anonymous.joinable is False  # no id of its own: served, but no label can find it
    finally:
        for client in clients:
            await client.close()
    await wait_learned(group, PER_PAIR)


async def test_labels_before_their_events_wait_even_behind_a_backlog(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """A backfill: labels first, then thousands of other events, then the labelled events."""
    group = await start(worker_factory, 1)
    events, labels = pair_traffic("early", seed=73)
    await produce(kafka.bootstrap, names.topics["labels"], labels)

    async def all_held() -> bool:
        return group[0].metrics().get("stream_app_early_labels") == PER_PAIR

    await wait_for(all_held, what="the labels to be held for their events")
    backlog = [
        (f"b-{i}".encode(), orjson.dumps({"id": f"b-{i}", "features": x, "label": y}))
        for i, (x, y) in enumerate(sea(5000, seed=74))
    ]
    await produce_as("librdkafka", kafka.bootstrap, names.topics["features"], backlog + events)
    await wait_learned(group, len(backlog) + PER_PAIR)


async def test_a_restart_rebuilds_served_events_and_waiting_labels(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """Served events (off their home) and early labels both survive a restart of the worker."""
    first = await start(worker_factory, 1)
    served_first, labels_later = pair_traffic("served", seed=75)
    events_later, labels_first = pair_traffic("held", seed=76)
    rng = random.Random(75)
    rng.shuffle(served_first)
    await produce_as("librdkafka", kafka.bootstrap, names.topics["features"], served_first)
    await produce_as("explicit", kafka.bootstrap, names.topics["labels"], labels_first)
    group = f"{names.app_id}-serve"
    await wait_consumed(kafka.bootstrap, group, names.topics["features"])
    await wait_consumed(kafka.bootstrap, group, names.topics["labels"])

    async def settled() -> bool:
        scraped = first[0].metrics()
        return (
            scraped.get("stream_app_early_labels") == PER_PAIR
            and scraped.get("stream_app_pending_events") == PER_PAIR
        )

    await wait_for(settled, what="200 served events and 200 labels waiting")
    await wait_consumed(kafka.bootstrap, group, f"{names.app_id}-join")
    assert first[0].stop() == 0
    second = await start(worker_factory, 1)
    await produce_as("librdkafka", kafka.bootstrap, names.topics["labels"], labels_later)
    await produce_as("aiokafka", kafka.bootstrap, names.topics["features"], events_later)
    await wait_learned(second, 2 * PER_PAIR)
