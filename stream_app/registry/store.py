"""The registry in Kafka: written through a Faust table, read by following its changelog.

Versions are written by the single learner through the Faust table ``models`` (one partition, so the
changelog is one ordered log, compacted by Kafka). faust-streaming 0.15 does not deliver a table's
updates to workers other than its active one (measured with Table and GlobalTable alike), so every
worker reads the registry the plain way: a consumer with no group follows the changelog topic from
its beginning into a :class:`~stream_app.registry.records.Registry` view and then keeps tailing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.errors import ConfigError
from stream_app.kafka.read import read_to_end
from stream_app.kafka.security import client_kwargs
from stream_app.kafka.topics import ensure_topics
from stream_app.registry.checkpoint import Write
from stream_app.registry.records import TABLE_NAME, Registry, changelog_topic
from stream_app.settings import Settings

__all__ = ["TABLE_NAME", "RegistryStore", "VersionStore"]

log = logging.getLogger(__name__)


class VersionStore(Protocol):
    """What the versions keeper needs of a store: a view, its changes, and ordered writes.

    :class:`RegistryStore` is the one in Kafka; a test can keep the writes in memory.
    """

    registry: Registry
    """The view of every stored key, as the changelog (or the memory) holds it."""
    ready: asyncio.Event
    """Set once the view holds what was stored when the worker started."""

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(model)`` after each change the view applies."""

    async def write(self, writes: list[Write]) -> None:
        """Write keys in order; return once they are stored."""

    async def caught_up(self) -> None:
        """Wait until the view has applied everything stored so far."""


class RegistryStore(mode.Service):
    """Writes registry keys through the Faust table; keeps an up-to-date view of the changelog."""

    def __init__(self, settings: Settings, app: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.app = app
        self.table = app.Table(
            TABLE_NAME,
            key_type=bytes,
            value_type=bytes,
            partitions=1,
            use_partitioner=True,  # written by the learner outside any agent
            help="Model versions: records and blob chunks (see stream_app.registry.records).",
        )
        self.topic = changelog_topic(settings.app.id)
        """The changelog topic that is the registry in Kafka."""
        faust_topic = str(self.table.changelog_topic.get_topic_name())
        if faust_topic != self.topic:  # the CLI and the tests read the registry by this name
            raise ConfigError(f"Faust names the registry {faust_topic!r}, not {self.topic!r}")
        self.registry = Registry(settings.registry)
        self.ready = asyncio.Event()
        """Set once the view has caught up with the changelog as it was at start."""
        self._listeners: list[Callable[[str], None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._fetched = asyncio.Event()
        """Set after each fetch of the follower, applied or empty: the view may have moved."""

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(model)`` after each change the view applies."""
        self._listeners.append(listener)

    async def write(self, writes: list[Write]) -> None:
        """Write keys in order through the table, wait until Kafka has them, then see them.

        The view applies its own writes at once (the follower applies them again in log order,
        to the same values): the next checkpoint must find this one as its parent and retire
        it, whether or not the follower's next fetch has come yet.
        """
        for key, value in writes:
            if value is not None:
                self.table[key] = value
            elif key in self.table:
                del self.table[key]
            else:
                self.table.on_key_del(key)  # a tombstone for a key this worker never held
        await self.app.producer.flush()
        for key, value in writes:
            self.registry.apply(key, value)

    async def caught_up(self) -> None:
        """Wait until the view has applied everything written to the changelog so far."""
        assert self._consumer is not None
        await self.ready.wait()
        tp = TopicPartition(self.topic, 0)
        end = (await self._consumer.end_offsets([tp]))[tp]
        while await self._consumer.position(tp) < end:
            self._fetched.clear()
            await self._fetched.wait()  # the follower's next fetch (at most follow_poll_ms away)

    async def on_start(self) -> None:
        """Make sure the changelog topic exists (one partition, compacted), then follow it."""
        await ensure_topics(
            self.settings, [self.topic], partitions=1, config={"cleanup.policy": "compact"}
        )
        self._consumer = AIOKafkaConsumer(
            **client_kwargs(self.settings),
            client_id=f"{self.settings.app.id}-registry",
            enable_auto_commit=False,
            fetch_max_wait_ms=self.settings.registry.follow_poll_ms,
            max_partition_fetch_bytes=4 * self.settings.registry.chunk_bytes,
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        """Stop following."""
        if self._consumer is not None:
            await self._consumer.stop()

    @mode.Service.task
    async def _follow(self) -> None:
        """Apply every changelog message to the view, in order, for as long as we run.

        First the changelog as it is at start (then the view is ``ready``), then each change as
        it comes, which listeners hear of.
        """
        consumer = self._consumer
        assert consumer is not None
        partitions = [TopicPartition(self.topic, 0)]  # one partition: one ordered log
        backoff, poll_ms = (
            self.settings.serve.retry_backoff_s,
            self.settings.registry.follow_poll_ms,
        )
        reading = read_to_end(consumer, partitions, retry_backoff_s=backoff, poll_ms=poll_ms)
        async for _, records in reading:
            for record in records:
                self.registry.apply(record.key, record.value)
        self.ready.set()
        log.info(
            "registry loaded from %s: %s",
            self.topic,
            {m: len(v) for m, v in self.registry.records.items()},
        )
        while not self.should_stop:
            try:
                batches = await consumer.getmany(timeout_ms=poll_ms)
            except KafkaError as exc:
                log.warning("registry follow failed (%s); retrying", exc)
                await asyncio.sleep(backoff)
                continue
            touched: set[str] = set()
            for records in batches.values():
                for record in records:
                    model = self.registry.apply(record.key, record.value)
                    if model is not None:
                        touched.add(model)
            self._fetched.set()
            for model in touched:
                for listener in self._listeners:
                    listener(model)
