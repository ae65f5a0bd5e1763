"""Serve fetched batches, and serve the next one while Kafka acknowledges the outputs of the last.

The serve loop commits an input only once Kafka has acknowledged every output of its batch
(at-least-once). Waiting for those acknowledgements (``acks = "all"``) left the worker idle for
about a sixth of a drain on the bench machine. So, under the serve lock, :meth:`_serve_batches`
sends a batch's outputs, serves the batch the consumer already holds next (if any) while the
broker writes them, then waits for the acknowledgements, and only then sends the next batch's
outputs: one batch in flight at a time, in order.

Nothing else sees a batch in flight: the chain ends, everything acknowledged, before the lock is
released, so a checkpoint, a command, a rebalance or a new version still comes between durable
batches, where the learner agrees with its learning log. The chain ends when the consumer holds
no next batch, a batch carries commands (they run once it is durable, before anything after it is
served), after ``serve.commit_interval_s``, on stop, and with keyed models (not chained).

If Kafka refuses a batch's outputs, that batch and the one served after it are both read again
(the learner has learned both; its log keeps every line, in order: see
:meth:`~stream_app.kafka.emit.Emitter.discard`), as a single batch was before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import Future
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.kafka.emit import Emitter
from stream_app.settings import Settings

if TYPE_CHECKING:
    from stream_app.worker.keyed_store import KeyedStore
    from stream_app.worker.versions import VersionKeeper

__all__ = ["BatchServing"]

log = logging.getLogger(__name__)

Batches = Mapping[TopicPartition, list[Any]]


class BatchServing:
    """The part of :class:`~stream_app.worker.serve.ServeLoop` that serves and sends batches."""

    if TYPE_CHECKING:  # the serve loop's state this part works with (the ServeLoop has it)
        settings: Settings
        pipeline: Pipeline
        metrics: Metrics
        keeper: VersionKeeper
        keyed: KeyedStore | None
        _consumer: AIOKafkaConsumer | None
        _emitter: Emitter | None
        _acked: dict[TopicPartition, int]

        @property
        def should_stop(self) -> bool:
            """True once the service is stopping."""

    async def _serve_batches(self, batches: Batches) -> None:
        """Serve every record, send the outputs, and mark the inputs acknowledged when durable.

        While Kafka acknowledges one batch's outputs, the next batch the consumer holds is
        served (see the module's docstring); all is acknowledged, or rewound, when it returns.
        """
        assert self._consumer is not None
        s = self.settings.serve
        commands = await self._serve_records(batches)
        sent = await self._send(batches)
        deadline = time.monotonic() + s.commit_interval_s
        while sent is not None and not commands and self.keyed is None and not self.should_stop:
            if time.monotonic() > deadline:
                break
            following = await self._consumer.getmany(timeout_ms=0, max_records=s.max_poll_records)
            if not following:
                break
            following_commands = await self._serve_records(following)
            if not await self._land(batches, sent, following):
                return
            batches, commands = following, following_commands
            sent = await self._send(batches)
        if sent is not None and await self._land(batches, sent):
            # Operations run once the batch is durable: a version they store agrees with the log.
            for record in commands:
                await self.keeper.command(record.value)

    async def _serve_records(self, batches: Batches) -> list[Any]:
        """Serve every record of ``batches`` onto the emitter; return the commands, not run yet."""
        assert self._emitter is not None
        received = time.perf_counter()
        s = self.settings
        topics = (s.topics.features, s.join_topic, s.topics.labels, s.examples_topic)
        order = {topic: rank for rank, topic in enumerate(topics)}
        commands: list[Any] = []
        # Served events first, so a label fetched together with its event finds it served.
        for tp in sorted(batches, key=lambda tp: (order.get(tp.topic, len(order)), tp.partition)):
            records = batches[tp]
            if tp.topic == s.topics.features:
                self.pipeline.features(records, received, self._emitter)
            elif tp.topic == s.join_topic:
                self.pipeline.joins(records, self._emitter)
            elif tp.topic == s.topics.labels:
                self.pipeline.labels(records, self._emitter)
            elif tp.topic == s.examples_topic:
                self.pipeline.examples(records, self._emitter)
            elif tp.topic == s.key_commands_topic and self.keyed is not None:
                await self.keyed.commands(self.pipeline, records, self._emitter)
            else:
                commands += records
        self.pipeline.expire(time.time(), self._emitter)
        self.pipeline.close_log(self._emitter)  # (each step closed its own; nothing may stay)
        if self.keyed is not None:  # keys due, and keys evicted: with this batch's outputs
            self.keyed.checkpoint(self.pipeline, self._emitter)
        return commands

    async def _send(self, batches: Batches) -> Sequence[Future[Any]] | None:
        """Send what serving ``batches`` queued; its delivery futures, or None (rewound)."""
        assert self._emitter is not None
        try:
            return await self._emitter.flush()
        except KafkaError as exc:
            await self._rewind(batches, {}, exc)
            return None

    async def _land(
        self,
        batches: Batches,
        sent: Sequence[asyncio.Future[Any]],
        following: Batches | None = None,
    ) -> bool:
        """Wait for Kafka to acknowledge ``sent``; mark ``batches`` acknowledged, or rewind.

        ``following`` was served after ``batches`` and is not sent yet: if Kafka refused
        ``batches``' outputs, both are read again. Returns whether ``batches`` is durable.
        """
        assert self._emitter is not None
        try:
            results = await asyncio.gather(*sent, return_exceptions=True)
            failure = next((r for r in results if isinstance(r, BaseException)), None)
        except KafkaError as exc:
            failure = exc
        if failure is not None:
            await self._rewind(batches, following or {}, failure)
            return False
        for tp, records in batches.items():
            self._acked[tp] = records[-1].offset + 1
        through = self._emitter.acked_through()
        if through is not None:  # what a checkpoint of the learner now says it has learned
            self.pipeline.learner.learned_through = through
        return True

    async def _rewind(self, batches: Batches, following: Batches, failure: BaseException) -> None:
        """Read ``batches`` again, and ``following`` served after them: Kafka refused outputs.

        Then pause ``serve.retry_backoff_s``.
        """
        assert self._consumer is not None and self._emitter is not None
        self._emitter.discard()
        self.metrics.delivery_failures.inc()
        first = {tp: records[0].offset for tp, records in following.items()}
        first.update({tp: records[0].offset for tp, records in batches.items()})  # (earlier)
        log.warning(
            "Kafka did not acknowledge outputs (%s); re-reading %d partition(s)",
            failure,
            len(first),
        )
        for tp, offset in first.items():
            self._consumer.seek(tp, offset)
        await asyncio.sleep(self.settings.serve.retry_backoff_s)
