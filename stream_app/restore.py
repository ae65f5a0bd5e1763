"""Rebuild the pending store of a newly assigned partition from Kafka itself.

The join keeps served events in memory until their labels arrive. After a restart, or when a
rebalance hands a partition to another worker, that memory is gone, but Kafka still has it: the
``features`` partition holds the events and the same-numbered ``predictions`` partition holds the
answers (a prediction is written to its event's partition). Re-reading the last ``pending_ttl_s``
of both, up to the group's committed offset and at most ``pending_max`` events, restores what a
delayed label needs, with no extra writes on the hot path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.decode import NO_LABEL, decode_event
from stream_app.errors import RejectedMessage
from stream_app.join import PendingStore, Served
from stream_app.security import client_kwargs
from stream_app.settings import Settings

__all__ = ["rebuild", "restore_partition"]

log = logging.getLogger(__name__)

_POLL_MS = 200


def rebuild(
    store: PendingStore,
    partition: int,
    events: list[Any],
    answers: dict[str, dict[str, Any]],
    settings: Settings,
) -> int:
    """Put back every unlabeled event that was answered; return how many came back.

    ``events`` are raw feature records in offset order; ``answers`` maps an event id to its
    (latest) prediction message.
    """
    restored = 0
    for record in events:
        try:
            event = decode_event(record.value, settings.limits)
        except RejectedMessage:
            continue  # it was dead-lettered when it was served
        answer = answers.get(event.id)
        if answer is None or event.label is not NO_LABEL:
            continue  # never answered, or learned inline already
        store.put(
            partition,
            event.id,
            Served(
                event.features,
                answer["prediction"],
                answer["proba"],
                None,
                answer["model_version"],
                answer["served_at"],
            ),
        )
        restored += 1
    return restored


async def restore_partition(
    settings: Settings, store: PendingStore, partition: int, committed: int | None
) -> int:
    """Re-read the recent past of one partition into ``store``; return the events restored."""
    if not committed or not settings.learn.enabled:
        return 0
    started = time.monotonic()
    deadline = started + settings.learn.restore_timeout_s
    since_ms = int((time.time() - settings.learn.pending_ttl_s) * 1000)
    features = TopicPartition(settings.topics.features, partition)
    predictions = TopicPartition(settings.topics.predictions, partition)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        enable_auto_commit=False,
        client_id=f"{settings.app.id}-restore",
    )
    await consumer.start()
    try:
        consumer.assign([features, predictions])
        by_time = await consumer.offsets_for_times({features: since_ms, predictions: since_ms})
        first = by_time[features].offset if by_time[features] else committed
        start = max(first, committed - settings.learn.pending_max, 0)
        events = await _read(consumer, features, start, committed, deadline)
        answers_end = (await consumer.end_offsets([predictions]))[predictions]
        answers_start = by_time[predictions].offset if by_time[predictions] else answers_end
        answers: dict[str, dict[str, Any]] = {}
        for record in await _read(consumer, predictions, answers_start, answers_end, deadline):
            body = orjson.loads(record.value)
            answers[body["id"]] = body
    finally:
        await consumer.stop()
    restored = rebuild(store, partition, events, answers, settings)
    log.info(
        "partition %d: restored %d served events awaiting labels in %.2fs",
        partition,
        restored,
        time.monotonic() - started,
    )
    return restored


async def _read(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, deadline: float
) -> list[Any]:
    """Every record of ``tp`` in ``[start, end)``, or what arrived before ``deadline``."""
    if start >= end:
        return []
    consumer.seek(tp, start)
    records: list[Any] = []
    while time.monotonic() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=_POLL_MS)
        for record in batch.get(tp, []):
            if record.offset < end:
                records.append(record)
        if await consumer.position(tp) >= end:
            return records
    log.warning(
        "restoring %s stopped at its time limit: %d of %d records read",
        tp,
        len(records),
        end - start,
    )
    return records
