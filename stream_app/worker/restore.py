"""Rebuild the join state of a newly assigned home partition from Kafka itself.

The join keeps served events (and labels that came before their event) in memory, at their id's
home partition (see :mod:`stream_app.core.route`). After a restart, or when a rebalance hands a
partition to another worker, that memory is gone, but Kafka still has it, in four partitions
numbered like the home: ``features`` (events served there whose home it is) with ``predictions``
(their answers: a prediction is written to its event's partition), the join topic (events served
elsewhere or over HTTP, and labels that arrived elsewhere) and ``labels`` (labels that arrived at
home). Re-reading the recent past of these, up to the group's committed offsets, restores what a
delayed label needs, with no extra writes on the hot path. A label whose served event is also
restored had joined it before the restart; the others wait again as early labels.

With keyed models (``model.key_field``) a keyed event waits at its model key's home, not its id's,
and its label must teach that key's model: the restored event names its key
(:attr:`~stream_app.core.join.Served.model_key`). A keyed event that arrived off its key's home
travelled there through the join topic (an ``"event"`` message) and was answered there, with its
prediction written to the partition it arrived on, so those predictions are read as well. (An
event served off its key's home by a worker that owned the home too is not restored: producers
key events by their model key, and then none is.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.core.decode import NO_LABEL, FeatureEvent, decode_event
from stream_app.core.join import EarlyLabel, EarlyLabels, PendingStore, Served, Source
from stream_app.core.keyed import decode_keyed_event, decode_keyed_label
from stream_app.core.label import decode_label
from stream_app.core.messages import decode_join
from stream_app.core.ports import Forwarded
from stream_app.core.route import home_partition
from stream_app.errors import ReadTimeout, RejectedMessage
from stream_app.kafka.read import read_to_end
from stream_app.kafka.security import client_kwargs
from stream_app.settings import Settings

__all__ = ["Past", "rebuild", "restore_home"]

log = logging.getLogger(__name__)

_MS = 1000.0


class Past(NamedTuple):
    """The recent past of one home partition, each list in offset order."""

    events: Sequence[Forwarded]
    """``features`` records, up to the committed offset."""
    answers: Mapping[str, dict[str, Any]]
    """The latest prediction message of each event id, from ``predictions``."""
    joins: Sequence[Forwarded] = ()
    """Join-topic records, up to the committed offset."""
    labels: Sequence[Forwarded] = ()
    """``labels`` records, up to the committed offset."""


def rebuild(
    pending: PendingStore,
    early: EarlyLabels,
    home: int,
    partitions: int,
    past: Past,
    settings: Settings,
) -> tuple[int, int]:
    """Put back what waited at ``home``; return (served events restored, early labels restored).

    Served events come from ``features`` (those whose home this is: the others went to their
    home through the join topic) and from the join topic (events served elsewhere, and keyed
    events answered here). Labels from the join topic and from ``labels`` (those whose home this
    is) either meet their restored event, which means they were learned before, or wait again.
    """
    served: dict[str, Served] = {}
    for record in past.events:
        found = _served(record.value, home, partitions, past.answers, settings, rerouted=False)
        if found is not None:
            served[found.id] = found.kept
    waiting: list[tuple[str, EarlyLabel]] = []
    for record in past.joins:
        try:
            message = decode_join(record.value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # it was dead-lettered when it was read
        event_id = message["id"]
        if message["kind"] == "event":  # a keyed event brought to its key's home, answered here
            if settings.model.key_field:
                original = message["original"]
                found = _served(original, home, partitions, past.answers, settings, rerouted=True)
                if found is not None:
                    served[found.id] = found.kept
        elif message["kind"] == "served":
            prediction, proba = message["served"]
            served[event_id] = Served(
                message["features"],
                prediction,
                proba,
                None,
                message["model_version"],
                message["served_at"],
                True,
                message.get("model_key"),
            )
        else:
            where = message["source"]
            source = Source(
                where["topic"], where["partition"], where["offset"], record.key, message["original"]
            )
            arrived = record.timestamp / _MS
            waiting.append((event_id, EarlyLabel(message["label"], source, True, arrived)))
    for record in past.labels:
        label = _label_home(record, partitions, settings)
        if label is not None and label.home == home:
            source = Source(record.topic, record.partition, record.offset, record.key, record.value)
            arrived = record.timestamp / _MS
            waiting.append((label.id, EarlyLabel(label.label, source, False, arrived)))
    for event_id, kept in served.items():
        pending.put(home, event_id, kept)
    held = 0
    for event_id, early_label in sorted(waiting, key=lambda item: item[1].arrived_at):
        if pending.take(home, event_id, early_label.arrived_at) is None:
            early.put(home, event_id, early_label)
            held += 1
    return len(served) - (len(waiting) - held), held


class _Found(NamedTuple):
    """A served event found in the past: its id and what was kept for its label."""

    id: str
    kept: Served


class _Label(NamedTuple):
    """A label found in the past: its event id, its value, and the home where it joins."""

    id: str
    label: Any
    home: int


def _decode(raw: bytes | None, settings: Settings) -> FeatureEvent:
    """Decode a feature event as the serve path did: with its model key when keys are on."""
    field = settings.model.key_field
    if field:
        return decode_keyed_event(raw, settings.limits, field)
    return decode_event(raw, settings.limits)


def _served(
    raw: bytes | None,
    home: int,
    partitions: int,
    answers: Mapping[str, dict[str, Any]],
    settings: Settings,
    rerouted: bool,
) -> _Found | None:
    """Return an event answered with ``home`` as its home whose label is awaited, or None.

    Its home is its model key's (keyed models) or its id's. An event that was dead-lettered,
    never answered, learned inline, or whose home is elsewhere does not wait here.
    """
    try:
        event = _decode(raw, settings)
    except RejectedMessage:
        return None  # it was dead-lettered when it was served
    answer = answers.get(event.id)
    if answer is None or event.label is not NO_LABEL:
        return None  # never answered, or learned inline already
    if home_partition(event.id if event.key is None else event.key, partitions) != home:
        return None  # it went to its home through the join topic
    kept = Served(
        event.features,
        answer["prediction"],
        answer["proba"],
        None,
        answer["model_version"],
        answer["served_at"],
        rerouted,
        event.key,
    )
    return _Found(event.id, kept)


def _label_home(record: Forwarded, partitions: int, settings: Settings) -> _Label | None:
    """Decode a ``labels`` record and find its home as the serve path did (None if rejected).

    Without keys: its id's home. With keys: its model key's if it names one, else the
    partition it arrived on (it came keyed by its model key).
    """
    field = settings.model.key_field
    try:
        if field:
            event_id, label, key = decode_keyed_label(record.value, settings.limits, field)
            home = record.partition if key is None else home_partition(key, partitions)
        else:
            event_id, label = decode_label(record.value, settings.limits)
            home = home_partition(event_id, partitions)
    except RejectedMessage:
        return None  # it was dead-lettered when it was read
    return _Label(event_id, label, home)


async def restore_home(
    settings: Settings,
    pending: PendingStore,
    early: EarlyLabels,
    home: int,
    partitions: int,
    committed: Mapping[str, int | None],
) -> tuple[int, int]:
    """Re-read the recent past of one home partition; return what :func:`rebuild` restored.

    ``committed`` maps ``features``, ``labels`` and the join topic to the group's committed
    offset on partition ``home`` (``None`` where nothing was committed yet).
    """
    if not settings.learn.enabled or not any(committed.values()):
        return 0, 0
    s = settings
    started = time.monotonic()
    deadline = started + s.learn.restore_timeout_s
    now_ms = time.time() * _MS
    served_ms = int(now_ms - s.learn.pending_ttl_s * _MS)
    early_ms = int(now_ms - s.learn.early_label_ttl_s * _MS)
    features = TopicPartition(s.topics.features, home)
    predictions = TopicPartition(s.topics.predictions, home)
    joins = TopicPartition(s.join_topic, home)
    labels = TopicPartition(s.topics.labels, home)
    consumer = AIOKafkaConsumer(
        **client_kwargs(s), enable_auto_commit=False, client_id=f"{s.app.id}-restore"
    )
    await consumer.start()
    try:
        consumer.assign([features, predictions, joins, labels])
        since = {features: served_ms, joins: min(served_ms, early_ms), labels: early_ms}
        by_time = await consumer.offsets_for_times(since)

        def window(tp: TopicPartition, most: int) -> tuple[int, int]:
            end = committed.get(tp.topic) or 0
            found = by_time.get(tp)
            first = found.offset if found is not None else end
            return max(first, end - most, 0), end

        events = await _read(consumer, features, *window(features, s.learn.pending_max), deadline)
        answers = await _answers(consumer, predictions, served_ms, deadline)
        most = s.learn.pending_max + s.learn.early_label_max
        joined = await _read(consumer, joins, *window(joins, most), deadline)
        early_labels = await _read(
            consumer, labels, *window(labels, s.learn.early_label_max), deadline
        )
        if s.model.key_field:  # keyed events answered here: their predictions went elsewhere
            for partition, ids in sorted(_routed_ids(joined, home).items()):
                tp = TopicPartition(s.topics.predictions, partition)
                answers |= await _answers(consumer, tp, served_ms, deadline, ids)
    finally:
        await consumer.stop()
    restored = rebuild(
        pending, early, home, partitions, Past(events, answers, joined, early_labels), s
    )
    log.info(
        "partition %d: restored %d served events awaiting labels and %d labels awaiting "
        "events in %.2fs",
        home,
        *restored,
        time.monotonic() - started,
    )
    return restored


async def _answers(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    since_ms: int,
    deadline: float,
    wanted: set[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Return the latest prediction on ``tp`` since ``since_ms`` of each (``wanted``) event id."""
    found = (await consumer.offsets_for_times({tp: since_ms})).get(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    first = found.offset if found is not None else end
    answers: dict[str, dict[str, Any]] = {}
    for record in await _read(consumer, tp, first, end, deadline):
        body = orjson.loads(record.value)
        if wanted is None or body["id"] in wanted:
            answers[body["id"]] = body
    return answers


def _routed_ids(joined: Sequence[Forwarded], home: int) -> dict[int, set[str]]:
    """Return the ids of keyed events the join topic brought to ``home``, by where they arrived.

    They were answered at ``home``, and each prediction went to the partition its event arrived
    on, not to ``home``'s: :func:`restore_home` reads those partitions of ``predictions`` for them.
    """
    ids: dict[int, set[str]] = {}
    for record in joined:
        try:
            message = decode_join(record.value)
            if message["kind"] != "event":
                continue
            partition = message["source"]["partition"]
            event_id = orjson.loads(message["original"] or b"")["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # not a keyed event that was answered: rebuild() skips it too
        if isinstance(event_id, str) and isinstance(partition, int) and partition != home:
            ids.setdefault(partition, set()).add(event_id)
    return ids


async def _read(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, deadline: float
) -> list[Any]:
    """Every record of ``tp`` in ``[start, end)``, or what arrived before ``deadline``."""
    records: list[Any] = []
    timeout_s = max(deadline - time.monotonic(), 0.0)
    try:
        async for _, batch in read_to_end(
            consumer, [tp], start={tp: start}, end={tp: end}, timeout_s=timeout_s
        ):
            records += batch
    except ReadTimeout:
        log.warning(
            "restoring %s stopped at its time limit: %d of %d records read",
            tp,
            len(records),
            end - start,
        )
    return records
