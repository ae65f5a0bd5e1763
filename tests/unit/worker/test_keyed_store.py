"""The keyed models' store reading its partitions on assignment, without a broker."""

from __future__ import annotations

import logging

import pytest
from aiokafka import TopicPartition

from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.route import home_partition
from stream_app.registry.keyed import KeyIndex, encode_version, record_key
from stream_app.settings import Settings
from stream_app.worker.keyed_store import KeyedStore
from tests.unit.kafka.fake_consumer import FakeConsumer

SETTINGS = Settings().replace(model={"key_field": "user"}, guard={"enabled": False})
PARTITIONS = 4


def version(key: str, number: int) -> tuple[bytes, bytes]:
    return encode_version(SETTINGS, key, number, Learner(SETTINGS), "checkpoint", at=0.0)


def store() -> KeyedStore:
    return KeyedStore(SETTINGS, Metrics(), PARTITIONS)


async def test_a_partition_is_read_from_its_first_offset_to_its_end() -> None:
    """Compaction moved the first offset; a tombstone deletes; a record not a version is skipped."""
    keyed = store()
    tp = TopicPartition(keyed.topic, 2)
    consumer = FakeConsumer(batch=2)
    consumer.start[tp] = 5
    for key, value in [version("u-2", 0), version("u-2", 1), version("u-4", 0)]:
        consumer.append(tp, key, value)
    consumer.append(tp, b"not a keyed version", b"{}")
    consumer.append(tp, record_key("u-4", 0), None)  # a tombstone: u-4 has no version 0 now
    consumer.positions[tp] = 10  # (an assigned partition's position: the read starts over)
    indexes = await keyed.read_indexes(consumer, [2], timeout_s=5.0)  # type: ignore[arg-type]
    assert list(indexes) == [2]
    assert list(indexes[2].keys()) == ["u-2"] and indexes[2].versions("u-2") == [0, 1]


async def test_an_empty_partition_gives_an_empty_index() -> None:
    keyed = store()
    consumer = FakeConsumer()
    indexes = await keyed.read_indexes(consumer, [0, 1], timeout_s=1.0)  # type: ignore[arg-type]
    assert {p: len(index) for p, index in indexes.items()} == {0: 0, 1: 0}


async def test_a_read_that_runs_out_of_time_keeps_what_it_read_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="stream_app")  # whatever level others left
    keyed = store()
    ready, stalled = TopicPartition(keyed.topic, 0), TopicPartition(keyed.topic, 1)
    consumer = FakeConsumer()
    consumer.append(ready, *version("u-6", 0))
    consumer.append(stalled, *version("u-0", 0))
    consumer.stalled.add(stalled)
    indexes = await keyed.read_indexes(consumer, [0, 1], timeout_s=0.3)  # type: ignore[arg-type]
    assert list(indexes[0].keys()) == ["u-6"] and len(indexes[1]) == 0
    assert "stopped at learn.restore_timeout_s" in caplog.text


def test_a_key_whose_newest_version_does_not_load_goes_on_from_the_one_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keyed = store()
    learner = Learner(SETTINGS)
    learner.serving.model.examples_learned = 7
    home = home_partition("u-1", PARTITIONS)
    index = keyed._indexes[home] = KeyIndex()  # (as read on assignment)
    index.apply(*version("u-1", 1))
    index.apply(*encode_version(SETTINGS, "u-1", 2, learner, "checkpoint", at=0.0))
    index.apply(record_key("u-1", 3), b"poison")
    with caplog.at_level(logging.WARNING):
        loaded = keyed.load("u-1")
    assert loaded is not None and loaded.serving.model.examples_learned == 7
    assert "version 3 does not load" in caplog.text
    index.apply(record_key("u-1", 5), b"poison")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert keyed.load("u-1") is None  # v2 and v1 are no longer held: a fresh model, said so
    assert "none of the 4 stored versions of key 'u-1' loads" in caplog.text
