"""The keyed models' store: the partitions of ``<app id>-keyed-models`` this worker owns, in Kafka.

A key's versions live on its home partition of a compacted topic partitioned like ``features``
(:mod:`stream_app.registry.keyed`), so the worker that serves partition *p* (range assignor) owns
the keys whose home is *p*, and a rebalance moves them with it. On assignment the worker reads its
new partitions of the topic to the end into a :class:`~stream_app.registry.keyed.KeyIndex` (values
stay encoded; with ``model.key_store = "disk"`` they are kept in a RocksDB database,
:mod:`stream_app.worker.key_disk`, and memory holds version numbers only) and decodes a key only
when an event of it comes (:meth:`KeyedStore.load`). A saved version is applied to the index at
once, so an evicted key that comes back in the same batch finds what it had, and queued on the serve
loop's emitter with the batch's outputs, so it is durable before the batch's inputs are committed.
On revoke, and at shutdown, the dirty keys of the partitions given up are checkpointed first
(``handover``).

:class:`KeyedStore` is the :class:`~stream_app.core.ports.KeyStore` port of the pipeline;
the serve loop calls its asynchronous half (:meth:`assign`, :meth:`queue`, :meth:`release`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.route import home_partition
from stream_app.errors import CorruptVersion, ReadTimeout
from stream_app.kafka.emit import Emitter
from stream_app.kafka.read import read_to_end
from stream_app.kafka.security import client_kwargs
from stream_app.kafka.topics import ensure_topics
from stream_app.registry.keyed import (
    VALUES_KEPT,
    KeyIndex,
    decode_version,
    encode_version,
    tombstones,
)
from stream_app.settings import Settings
from stream_app.worker.key_commands import carry_out, rollback_target
from stream_app.worker.key_disk import DiskValues, store_path

__all__ = ["COMPACTED", "KeyedStore"]

log = logging.getLogger(__name__)

COMPACTED: Final = {"cleanup.policy": "compact"}
"""The keyed-models topic's configuration: a key's tombstoned versions are deleted by compaction."""


class KeyedStore:
    """The keyed-models partitions this worker owns: read on assignment, written with outputs."""

    def __init__(self, settings: Settings, metrics: Metrics, partitions: int) -> None:
        self.settings = settings
        self.metrics = metrics
        self.partitions = partitions
        """Partitions of ``features`` and of the keyed-models topic (a key's home: its murmur2)."""
        self.topic = settings.keyed_models_topic
        self._indexes: dict[int, KeyIndex] = {}
        self._given_up: set[int] = set()
        """Partitions revoked and not (yet) assigned again: their index is kept, not owned."""
        """partition -> the versions it holds, for every partition this worker owns."""
        self._queued: list[tuple[int, bytes, bytes | None]] = []
        self._fetched: dict[tuple[str, int], bytes] = {}
        """Older versions read from the topic for this batch's rollbacks (see :meth:`commands`)."""
        """(partition, record key, value or None for a tombstone) saved since the last queue."""
        self.disk: DiskValues | None = None
        """Where the owned partitions' values are kept with ``model.key_store = "disk"``."""

    @classmethod
    async def start(cls, settings: Settings, pipeline: Pipeline, metrics: Metrics) -> KeyedStore:
        """Create the topic if it is missing, then make ``pipeline`` serve keyed models from it."""
        await ensure_topics(
            settings,
            [settings.keyed_models_topic],
            partitions=pipeline.partitions,
            config=COMPACTED,
        )
        await ensure_topics(settings, [settings.key_commands_topic], partitions=pipeline.partitions)
        store = cls(settings, metrics, pipeline.partitions)
        if settings.model.key_store == "disk":
            store.disk = DiskValues(store_path(settings))
        pipeline.use_keys(store)
        return store

    # The KeyStore port (synchronous, on the serve path).

    def owns(self, partition: int) -> bool:
        """Tell whether this worker owns ``partition`` (its keys' versions were read)."""
        return partition in self._indexes and partition not in self._given_up

    def load(self, key: str) -> Learner | None:
        """Return ``key``'s newest version that loads (the one before if it is corrupt), or None.

        The index holds the values of the newest versions only: if none of them loads, the key
        starts afresh (its next version is numbered after the stored ones), with a warning.
        """
        index = self._indexes.get(home_partition(key, self.partitions))
        if index is None:
            return None
        stored = index.versions(key)
        for version in reversed(stored):
            value = index.value(key, version)
            if value is None:
                continue
            try:
                _, learner = decode_version(self.settings, value)
            except CorruptVersion as exc:
                log.warning(
                    "key %r version %d does not load (%s); trying an older one", key, version, exc
                )
                self.metrics.version_load_failures.labels(reason=exc.reason).inc()
                continue
            return learner
        if stored:
            log.warning(
                "none of the %d stored versions of key %r loads; it starts afresh", len(stored), key
            )
        return None

    def stored(self, key: str, version: int) -> bytes | None:
        """Return the stored value of ``key``'s ``version`` (this worker owns its home), or None."""
        index = self._indexes.get(home_partition(key, self.partitions))
        if index is None:
            return None
        return index.value(key, version) or self._fetched.get((key, version))

    def save(self, key: str, partition: int, learner: Learner, reason: str, now: float) -> None:
        """Store ``learner`` as ``key``'s next version; tombstone what ``keep_last`` lets go."""
        index = self._indexes.get(partition)
        if index is None:
            index = self._indexes[partition] = self._index(partition)
        stored = index.versions(key)
        version = learner.allocate_version(stored[-1] if stored else -1)
        learner.serving.model.version = version
        record_key, value = encode_version(self.settings, key, version, learner, reason, at=now)
        index.apply(record_key, value)
        self._queued.append((partition, record_key, value))
        for deleted in tombstones(index, key, self.settings.registry.keep_last):
            index.apply(deleted, None)
            self._queued.append((partition, deleted, None))

    # The serve loop's half.

    def queue(self, emitter: Emitter) -> int:
        """Queue the versions saved since the last call on ``emitter``; return how many messages."""
        for partition, record_key, value in self._queued:
            if value is None:
                emitter.tombstone(self.topic, partition, record_key)
            else:
                emitter.to_partition(self.topic, partition, record_key, value)
        count = len(self._queued)
        self._queued.clear()
        return count

    async def commands(self, pipeline: Pipeline, records: list[Any], emitter: Emitter) -> None:
        """Carry out key commands (:mod:`stream_app.worker.key_commands`) with this batch.

        A rollback to a version older than the few whose values the index holds reads that
        value from the topic first (rare: one read of the key's partition).
        """
        wanted = [w for w in map(rollback_target, records) if w is not None]
        missing = [(k, v) for k, v in wanted if self.stored(k, v) is None]
        if missing:
            await self._fetch(missing)
        try:
            carry_out(self, pipeline, records, emitter)
        finally:
            self._fetched.clear()

    async def _fetch(self, wanted: list[tuple[str, int]]) -> None:
        """Read the values of ``wanted`` (key, version) from their partitions into ``_fetched``."""
        partitions = sorted({home_partition(key, self.partitions) for key, _ in wanted})
        read = await self._read_once("keyed-fetch", partitions, values_kept=None)
        for key, version in wanted:
            value = read[home_partition(key, self.partitions)].value(key, version)
            if value is not None:
                self._fetched[(key, version)] = value

    def checkpoint(self, pipeline: Pipeline, emitter: Emitter) -> None:
        """Checkpoint the keys that are due and queue every saved version with the batch."""
        pipeline.checkpoint_keys(time.time())
        self.queue(emitter)

    async def release(
        self, pipeline: Pipeline, partitions: Iterable[int], emitter: Emitter
    ) -> None:
        """Checkpoint the dirty keys of ``partitions`` (given up) and wait until Kafka has them.

        From now until they are assigned again this worker does not own them: over HTTP it
        answers none of their keys (another worker may be learning them already).
        """
        partitions = set(partitions)
        stored = pipeline.release_keys(partitions, time.time())
        self._given_up |= partitions
        if not self.queue(emitter):
            return
        try:
            await asyncio.gather(*await emitter.flush())
        except KafkaError as exc:
            log.warning("%d keys' handover versions were not acknowledged: %s", stored, exc)
            emitter.discard()
            return
        log.info("checkpointed %d keys of the partitions given up", stored)

    async def assign(self, partitions: Iterable[int]) -> None:
        """Own exactly ``partitions``: forget the others, read the new ones to their end."""
        wanted = set(partitions)
        for gone in set(self._indexes) - wanted:
            del self._indexes[gone]
            if self.disk is not None:
                self.disk.clear(gone)
        self._given_up -= wanted
        new = sorted(wanted - set(self._indexes))
        if new:
            await self._read(new)

    async def _read(self, partitions: list[int]) -> None:
        """Read ``partitions`` of the topic from the beginning to their end into fresh indexes."""
        started = time.monotonic()
        indexes = await self._read_once("keyed-restore", partitions, local=True)
        self._indexes.update(indexes)
        log.info(
            "partitions %s: %d keyed models stored, read in %.2fs",
            partitions,
            sum(len(index) for index in indexes.values()),
            time.monotonic() - started,
        )

    async def _read_once(
        self, purpose: str, partitions: list[int], **options: Any
    ) -> dict[int, KeyIndex]:
        """:meth:`read_indexes` on a consumer of its own, opened for this read and closed after."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            **client_kwargs(s), enable_auto_commit=False, client_id=f"{s.app.id}-{purpose}"
        )
        await consumer.start()
        try:
            return await self.read_indexes(
                consumer, partitions, s.learn.restore_timeout_s, **options
            )
        finally:
            await consumer.stop()

    async def read_indexes(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[int],
        timeout_s: float,
        values_kept: int | None = VALUES_KEPT,
        local: bool = False,
    ) -> dict[int, KeyIndex]:
        """Return an index of each of ``partitions``, read from its beginning to its end now.

        ``local``: the indexes of partitions this worker now owns, kept where ``model.key_store``
        says (their range of the disk store is wiped first); otherwise in memory (a one-off read).

        A read that runs past ``timeout_s`` keeps what it read (its keys may resume from older
        versions) and says so. It starts at each partition's first offset as the broker reports
        it (compaction and retention move it).
        """
        tps = [TopicPartition(self.topic, p) for p in partitions]
        indexes = {p: self._index(p) if local else KeyIndex(values_kept) for p in partitions}
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        try:
            async for tp, records in read_to_end(consumer, tps, start=starts, timeout_s=timeout_s):
                index = indexes[tp.partition]
                for record in records:
                    self._apply(index, record.key, record.value)
        except ReadTimeout as exc:
            log.warning(
                "reading keyed models of partitions %s stopped at learn.restore_timeout_s (%s); "
                "their keys may resume from older versions",
                partitions,
                exc,
            )
        return indexes

    def _index(self, partition: int) -> KeyIndex:
        """Return an empty index of an owned ``partition``, its values where the setting says."""
        if self.disk is None:
            return KeyIndex()
        self.disk.clear(partition)
        return KeyIndex(values=self.disk.partition(partition))

    async def stop(self, pipeline: Pipeline, emitter: Emitter) -> None:
        """At shutdown: checkpoint every dirty key (:meth:`release`), then close the disk store."""
        try:
            await self.release(pipeline, range(self.partitions), emitter)
        finally:
            if self.disk is not None:
                self.disk.close()
                self.disk = None

    def _apply(self, index: KeyIndex, key: bytes | None, value: bytes | None) -> None:
        """Apply one record of the topic; one that is not a keyed version is logged and skipped."""
        try:
            index.apply(key or b"", value)
        except CorruptVersion as exc:
            log.warning("skipping a record of %s that is not a keyed version: %s", self.topic, exc)
