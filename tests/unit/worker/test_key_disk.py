"""``model.key_store = "disk"``: keyed values in RocksDB, memory holding version numbers only."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.route import home_partition
from stream_app.errors import ConfigError
from stream_app.registry.keyed import KeyIndex, encode_version, record_key, tombstones
from stream_app.settings import Settings
from stream_app.worker.key_disk import DiskValues
from stream_app.worker.keyed_store import KeyedStore
from tests.unit.kafka.fake_consumer import FakeConsumer

PARTITIONS = 4


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskValues]:
    values = DiskValues(tmp_path / "keyed" / "app")
    yield values
    values.close()


def settings(tmp_path: Path, store: str = "disk") -> Settings:
    return Settings().replace(
        app={"data_dir": str(tmp_path)},
        model={"key_field": "user", "key_store": store},
        guard={"enabled": False},
    )


def test_the_index_on_disk_follows_the_topic_as_in_memory(disk: DiskValues) -> None:
    """The same messages give the same versions and values; only the newest two are on disk."""
    on_disk, in_memory = KeyIndex(values=disk.partition(1)), KeyIndex()
    messages: list[tuple[bytes, bytes | None]] = [
        (record_key("a/b", v), f"a{v}".encode()) for v in (1, 2, 3, 5, 4)
    ]
    messages += [(record_key("c", 1), b"c1"), (record_key("a/b", 5), None)]
    messages += [(record_key("a/b", 1), None), (record_key("c", 1), None)]
    messages += [(record_key("d", 0), b"d0")]
    for raw, value in messages:
        on_disk.apply(raw, value)
        in_memory.apply(raw, value)
        for key in ("a/b", "c", "d"):
            assert on_disk.versions(key) == in_memory.versions(key)
            for version in [None, *range(6)]:
                assert on_disk.value(key, version) == in_memory.value(key, version)
    assert on_disk.versions("a/b") == [2, 3, 4] and on_disk.value("a/b") == b"a4"
    assert "c" not in on_disk and on_disk.value("d") == b"d0"
    assert tombstones(on_disk, "a/b", keep_last=1) == [record_key("a/b", 2)]
    assert disk.partition(1).get(record_key("a/b", 4)) == b"a4"  # the value is on disk
    assert disk.partition(1).get(record_key("a/b", 3)) is None  # dropped when 5 came
    assert disk.partition(0).get(record_key("a/b", 4)) is None  # another partition's range
    assert disk.count() == 2  # a/b 4, d 0: dropped and tombstoned values are deleted


def test_memory_holds_version_numbers_not_values(disk: DiskValues) -> None:
    """1,000 keys x 3 versions of 20 KB: in memory 40 MB of values; on disk, numbers only."""
    value = bytes(20_000)
    tracemalloc.start()
    try:
        index = KeyIndex(values=disk.partition(0))
        before, _ = tracemalloc.get_traced_memory()
        for version in range(3):
            for key in range(1000):
                index.apply(record_key(f"user-{key}", version), value)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 2_000_000  # the Python heap: keys and numbers (about 0.5 MB)
    assert index.value("user-7") == value and index.versions("user-7") == [0, 1, 2]
    assert disk.count() == 2000


def test_a_new_disk_store_wipes_what_a_former_run_left(tmp_path: Path) -> None:
    path = tmp_path / "keyed" / "app"
    first = DiskValues(path)
    first.partition(2).put(b"u-1/0", b"old")
    with pytest.raises(ConfigError, match="another worker"):
        DiskValues(path)  # a second worker on the same data_dir is refused, not interleaved
    first.close()
    again = DiskValues(path)
    try:
        assert again.partition(2).get(b"u-1/0") is None and again.count() == 0
    finally:
        again.close()


async def test_a_worker_rebuilds_its_disk_store_from_the_topic_and_loads_from_it(
    tmp_path: Path,
) -> None:
    """Assignment reads the topic into the disk store; a key loads from it through decode_version
    (checksum, signature, safe unpickler); a partition that leaves is wiped from disk; a restart
    starts from an empty store and reads the topic again."""
    s = settings(tmp_path).replace(registry={"signing_key": "k" * 32})
    learner = Learner(s)
    learner.serving.model.examples_learned = 11
    home = home_partition("u-1", PARTITIONS)
    consumer = FakeConsumer()
    topic = s.keyed_models_topic
    tp = TopicPartition(topic, home)
    consumer.append(tp, *encode_version(s, "u-1", 0, Learner(s), "checkpoint", at=0.0))
    consumer.append(tp, *encode_version(s, "u-1", 1, learner, "checkpoint", at=0.0))
    for run in range(2):  # a restart: the same topic, a fresh store
        keyed = KeyedStore(s, Metrics(), PARTITIONS)
        keyed.disk = DiskValues(tmp_path / "keyed" / s.app.id)
        try:
            assert keyed.disk.count() == 0
            read = await keyed.read_indexes(
                consumer,  # type: ignore[arg-type]
                [home],
                timeout_s=5.0,
                local=True,
            )
            keyed._indexes.update(read)
            assert keyed.disk.count() == 2, run
            loaded = keyed.load("u-1")
            assert loaded is not None and loaded.serving.model.examples_learned == 11
            keyed.disk.partition(home).put(record_key("u-1", 1), b"forged")  # (tampered on disk)
            fallback = keyed.load("u-1")  # refused by the checksum: the version before it loads
            assert fallback is not None and fallback.serving.model.examples_learned == 0
            await keyed.assign([])  # every partition leaves (none is read: none is new)
            assert keyed.disk.count() == 0 and keyed.load("u-1") is None
        finally:
            keyed.disk.close()


def test_the_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="key_store"):
        Settings().replace(model={"key_store": "tape"})
