"""Restoring a home partition's join state from its recent past, without a broker."""

from __future__ import annotations

import logging
import time

import orjson
import pytest
from aiokafka import TopicPartition

from stream_app.core.join import EarlyLabels, PendingStore
from stream_app.core.messages import encode_join_event, encode_join_label, encode_join_served
from stream_app.core.route import home_partition
from stream_app.settings import Settings
from stream_app.worker.restore import Past, _read, _routed_ids, rebuild, restore_home
from tests.unit.kafka.fake_consumer import FakeConsumer, Rec

PARTITIONS = 4
HOME = 1
SERVED_AT = 1000.0


def at_home(event_id: str) -> bool:
    return home_partition(event_id, PARTITIONS) == HOME


def test_the_ids_below_have_the_homes_the_tests_assume() -> None:
    assert [at_home(i) for i in ("e0", "e1", "e2", "e4", "e5")] == [True] * 5
    assert not at_home("e3") and not at_home("e6")


def record(topic: str, offset: int, value: bytes, partition: int = HOME) -> Rec:
    return Rec(topic, partition, offset, None, value, timestamp=int(SERVED_AT * 1000) + offset)


def event(event_id: str, label: object = None) -> bytes:
    body: dict[str, object] = {"id": event_id, "features": {"x": 1.0}}
    if label is not None:
        body["label"] = label
    return orjson.dumps(body)


def answer(event_id: str) -> dict[str, object]:
    return {
        "id": event_id,
        "prediction": True,
        "proba": {"true": 0.8},
        "model_version": 3,
        "served_at": SERVED_AT,
    }


def test_served_events_come_back_and_their_labels_meet_them_or_wait_again() -> None:
    s = Settings()
    events = [
        record("features", 0, event("e0")),  # answered, waiting for its label
        record("features", 1, event("e1", label=True)),  # learned inline already
        record("features", 2, event("e2")),  # never answered
        record("features", 3, event("e3")),  # home 0: it went there through the join topic
        record("features", 4, b"{not json"),  # dead-lettered when it was served
    ]
    answers = {i: answer(i) for i in ("e0", "e1", "e3")}
    joins = [
        record("join", 0, encode_join_served("e4", {"x": 2.0}, (False, {}), None, 2, SERVED_AT)),
        record("join", 1, encode_join_label("e5", True, "labels", 0, 9, b'{"id":"e5"}')),
        record("join", 2, b"[]"),
    ]
    labels = [
        record("labels", 0, orjson.dumps({"id": "e0", "label": False})),  # met e0: learned
        record("labels", 1, orjson.dumps({"id": "e6", "label": False})),  # home 0: not here
    ]
    pending = PendingStore(s.learn.pending_ttl_s, s.learn.pending_max)
    early = EarlyLabels(s.learn.early_label_ttl_s, s.learn.early_label_max)
    restored = rebuild(pending, early, HOME, PARTITIONS, Past(events, answers, joins, labels), s)
    assert restored == (1, 1)  # e4 waits for its label (e0 had it); e5's label waits for e5
    kept = pending.take(HOME, "e4", SERVED_AT)
    assert kept is not None and kept.features == {"x": 2.0} and kept.rerouted
    assert pending.take(HOME, "e0", SERVED_AT) is None and len(pending) == 0
    assert (HOME, "e5") in early and len(early) == 1
    held = early.take(HOME, "e5")
    assert held is not None and held.rerouted and held.source.offset == 9


HOME_KEY, AWAY_KEY = "u-0", "u-1"
"""Model keys whose homes are partition ``HOME`` and partition 3."""


def keyed(event_id: str, key: str | None, label: object = None) -> bytes:
    body: dict[str, object] = {"id": event_id, "features": {"x": 1.0}}
    if key is not None:
        body["user"] = key
    if label is not None:
        body["label"] = label
    return orjson.dumps(body)


def test_the_keys_below_have_the_homes_the_tests_assume() -> None:
    assert home_partition(HOME_KEY, PARTITIONS) == HOME
    assert home_partition(AWAY_KEY, PARTITIONS) == 3


def test_keyed_events_wait_at_their_keys_home_and_name_their_key() -> None:
    """A keyed event waits where its model key lives, and its label will teach that key."""
    s = Settings().replace(model={"key_field": "user"})
    events = [
        record("features", 0, keyed("e3", HOME_KEY)),  # its id's home is 0; its key's is here
        record("features", 1, keyed("e0", AWAY_KEY)),  # its id's home is here; its key's is 3
        record("features", 2, keyed("e1", HOME_KEY, label=True)),  # learned inline already
        record("features", 3, keyed("e2", None)),  # no key: dead-lettered invalid_model_key
    ]
    routed = encode_join_event("features", 3, 17, keyed("e6", HOME_KEY))
    joins = [record("join", 0, routed)]  # arrived on 3, answered here: its answer is on 3
    labels = [
        record("labels", 0, orjson.dumps({"id": "e3", "label": False})),  # keyed by its key
        record("labels", 1, orjson.dumps({"id": "e4", "label": True, "user": AWAY_KEY})),
        record("labels", 2, orjson.dumps({"id": "e7", "label": True})),  # before its event
    ]
    answers = {i: answer(i) for i in ("e0", "e1", "e2", "e3", "e6")}
    pending = PendingStore(s.learn.pending_ttl_s, s.learn.pending_max)
    early = EarlyLabels(s.learn.early_label_ttl_s, s.learn.early_label_max)
    restored = rebuild(pending, early, HOME, PARTITIONS, Past(events, answers, joins, labels), s)
    assert restored == (1, 1)  # e6 waits (e3 met its label); e7's label waits for e7
    kept = pending.take(HOME, "e6", SERVED_AT)
    assert kept is not None and kept.model_key == HOME_KEY and kept.rerouted
    assert kept.model_version == 3 and kept.prediction is True
    assert len(pending) == 0 and len(early) == 1 and (HOME, "e7") in early


def test_a_keyed_event_waiting_here_names_its_key() -> None:
    s = Settings().replace(model={"key_field": "user"})
    events = [record("features", 0, keyed("e3", HOME_KEY))]
    pending = PendingStore(s.learn.pending_ttl_s, s.learn.pending_max)
    early = EarlyLabels(s.learn.early_label_ttl_s, s.learn.early_label_max)
    past = Past(events, {"e3": answer("e3")})
    assert rebuild(pending, early, HOME, PARTITIONS, past, s) == (1, 0)
    kept = pending.take(HOME, "e3", SERVED_AT)
    assert kept is not None and kept.model_key == HOME_KEY and not kept.rerouted


def test_without_keys_routed_keyed_events_are_not_restored() -> None:
    """With ``model.key_field`` empty an ``"event"`` join message is left alone, as before."""
    s = Settings()
    joins = [record("join", 0, encode_join_event("features", 3, 17, keyed("e6", HOME_KEY)))]
    pending = PendingStore(s.learn.pending_ttl_s, s.learn.pending_max)
    early = EarlyLabels(s.learn.early_label_ttl_s, s.learn.early_label_max)
    past = Past([], {"e6": answer("e6")}, joins)
    assert rebuild(pending, early, HOME, PARTITIONS, past, s) == (0, 0)


def test_routed_keyed_events_are_found_by_the_partition_they_arrived_on() -> None:
    joins = [
        record("join", 0, encode_join_event("features", 3, 17, keyed("e6", HOME_KEY))),
        record("join", 1, encode_join_event("features", 0, 4, keyed("e8", HOME_KEY))),
        record("join", 2, encode_join_event("features", HOME, 5, keyed("e9", HOME_KEY))),
        record("join", 3, encode_join_event("features", 2, 5, b"{not json")),
        record("join", 4, encode_join_label("e5", True, "labels", 0, 9, b'{"id":"e5"}')),
    ]
    assert _routed_ids(joins, HOME) == {3: {"e6"}, 0: {"e8"}}


async def test_nothing_is_read_when_learning_is_off_or_nothing_was_committed() -> None:
    s = Settings()
    pending = PendingStore(s.learn.pending_ttl_s, s.learn.pending_max)
    early = EarlyLabels(s.learn.early_label_ttl_s, s.learn.early_label_max)
    fresh = {"features": None, "labels": None, s.join_topic: None}
    assert await restore_home(s, pending, early, 0, PARTITIONS, fresh) == (0, 0)
    off = s.replace(learn={"enabled": False})
    assert await restore_home(off, pending, early, 0, PARTITIONS, {"features": 5}) == (0, 0)


async def test_a_window_is_read_up_to_the_committed_offset() -> None:
    tp = TopicPartition("features", HOME)
    consumer = FakeConsumer(batch=2)
    for i in range(8):
        consumer.append(tp, None, event(f"e{i}"))
    consumer.assign([tp])
    records = await _read(consumer, tp, 2, 6, time.monotonic() + 5.0)  # type: ignore[arg-type]
    assert [r.offset for r in records] == [2, 3, 4, 5]


async def test_a_read_that_runs_out_of_time_keeps_what_it_read_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app")  # whatever level others left
    tp = TopicPartition("labels", HOME)
    consumer = FakeConsumer()
    for _ in range(3):
        consumer.append(tp, None, b"{}")
    consumer.assign([tp])
    consumer.stalled.add(tp)
    deadline = time.monotonic() + 0.2
    assert await _read(consumer, tp, 0, 3, deadline) == []  # type: ignore[arg-type]
    assert "stopped at its time limit: 0 of 3 records read" in caplog.text
