"""Read partitions to their end: the one loop behind every "read these topics up to now".

The registry view, ``stream-app models``, a restored home partition, a retrain's log tail and the
report all read some partitions from a start (their beginning, or a given offset) up to an end
(their end offset when the read began, or a given offset), then stop. :func:`read_to_end` is that
loop: it yields each fetched batch, cut at the end, and leaves the consumer positioned exactly at
the end, so that a caller who keeps reading (the registry store) misses nothing fetched past it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.errors import ReadTimeout
from stream_app.kafka.topics import topic_partitions

__all__ = ["POLL_MS", "partitions_of", "read_to_end"]

log = logging.getLogger(__name__)

POLL_MS: Final = 200
"""How long one fetch waits for records by default (ms): the granularity of a deadline."""


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Return every partition of ``topics`` (each topic once, partitions in order)."""
    return [
        TopicPartition(topic, p)
        for topic in dict.fromkeys(topics)
        for p in sorted(await topic_partitions(consumer, topic))
    ]


async def read_to_end(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    *,
    start: Mapping[TopicPartition, int] | None = None,
    end: Mapping[TopicPartition, int] | None = None,
    timeout_s: float | None = None,
    retry_backoff_s: float | None = None,
    poll_ms: int = POLL_MS,
) -> AsyncIterator[tuple[TopicPartition, list[Any]]]:
    """Yield ``(partition, records)`` batches of ``partitions`` from ``start`` up to ``end``.

    ``start`` defaults to each partition's beginning, ``end`` to its end offset now; records at
    or past the end are not yielded, and the consumer is left at the end. The consumer is
    assigned the partitions unless it holds them already. Past ``timeout_s`` it raises
    :class:`~stream_app.errors.ReadTimeout` (after yielding what it read); a failed fetch is
    retried after ``retry_backoff_s`` when that is given, and raised otherwise. One fetch waits
    up to ``poll_ms`` for records.
    """
    tps = sorted(set(partitions))
    ends = dict(end) if end is not None else await consumer.end_offsets(tps) if tps else {}
    if not set(tps) <= consumer.assignment():
        consumer.assign(tps)
    remaining = {tp for tp in tps if ends[tp] > (start or {}).get(tp, 0)}
    if not remaining:
        return
    if start is None:
        await consumer.seek_to_beginning(*remaining)
    else:
        for tp in remaining:
            consumer.seek(tp, start[tp])
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while remaining:
        if deadline is not None and time.monotonic() > deadline:
            names = ", ".join(sorted({tp.topic for tp in remaining}))
            raise ReadTimeout(f"could not read {names} to the end in {timeout_s:g}s")
        try:
            batches = await consumer.getmany(*remaining, timeout_ms=poll_ms)
        except KafkaError as exc:
            if retry_backoff_s is None:
                raise
            log.warning(
                "reading %s failed (%s); retrying in %.1fs", remaining, exc, retry_backoff_s
            )
            await asyncio.sleep(retry_backoff_s)
            continue
        for tp, records in batches.items():
            below = [r for r in records if r.offset < ends[tp]]
            if below:
                yield tp, below
        for tp in list(remaining):
            position = await consumer.position(tp)
            if position >= ends[tp]:
                remaining.discard(tp)
            if position > ends[tp]:  # fetched past the end: a caller who reads on gets the rest
                consumer.seek(tp, ends[tp])
