"""read_to_end: from a start to the end offsets it began with, and no further."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from stream_app.errors import ReadTimeout
from stream_app.kafka.read import read_to_end
from tests.unit.kafka.fake_consumer import FakeConsumer

A, B = TopicPartition("a", 0), TopicPartition("b", 1)


def filled(**counts: int) -> FakeConsumer:
    consumer = FakeConsumer(batch=3)
    for name, count in counts.items():
        tp = A if name == "a" else B
        for i in range(count):
            consumer.append(tp, f"{name}{i}".encode(), b"v")
    return consumer


async def keys(reading: AsyncIterator[tuple[TopicPartition, list[Any]]]) -> list[bytes]:
    return [r.key async for _, records in reading for r in records]


async def test_it_reads_from_the_beginning_to_the_end_it_began_with_and_stops_there() -> None:
    consumer = filled(a=7, b=2)
    seen: list[bytes] = []
    async for tp, records in read_to_end(consumer, [A, B]):
        seen += [r.key for r in records]
        if tp == A and b"later" not in [r.key for r in consumer.logs[A]]:
            consumer.append(A, b"later", b"v")  # written while we read: past our end
    assert sorted(seen) == sorted([f"a{i}".encode() for i in range(7)] + [b"b0", b"b1"])
    assert consumer.positions[A] == 7  # left at the end, not past what it fetched
    (later,) = [r for r in consumer.logs[A] if r.key == b"later"]
    assert later.offset >= 7  # what a caller reading on gets next


async def test_it_starts_and_ends_where_told() -> None:
    consumer = filled(a=10)
    got = await keys(read_to_end(consumer, [A], start={A: 2}, end={A: 5}))
    assert got == [b"a2", b"a3", b"a4"]


async def test_a_compacted_start_is_read_from_the_first_offset_there_is() -> None:
    consumer = FakeConsumer()
    consumer.start[A] = 4
    for i in range(3):
        consumer.append(A, f"k{i}".encode(), b"v")
    assert await keys(read_to_end(consumer, [A])) == [b"k0", b"k1", b"k2"]


async def test_empty_partitions_are_assigned_and_nothing_is_read() -> None:
    consumer = FakeConsumer()
    assert await keys(read_to_end(consumer, [A, B])) == []
    assert consumer.assignment() == {A, B}  # a caller that follows on can fetch at once


async def test_past_its_time_it_raises_after_what_it_read() -> None:
    consumer = filled(a=2, b=2)
    consumer.stalled.add(B)
    seen: list[bytes] = []
    with pytest.raises(ReadTimeout, match=r"could not read b to the end in 0\.3s"):
        async for _, records in read_to_end(consumer, [A, B], timeout_s=0.3):
            seen += [r.key for r in records]
    assert seen == [b"a0", b"a1"]


async def test_a_failed_fetch_is_retried_only_when_asked() -> None:
    with pytest.raises(KafkaError):
        await keys(read_to_end(_failing(), [A]))
    retried = _failing()
    assert await keys(read_to_end(retried, [A], retry_backoff_s=0.0)) == [b"a0"]


def _failing() -> FakeConsumer:
    consumer = FakeConsumer(failures=1)
    consumer.append(A, b"a0", b"v")
    return consumer
