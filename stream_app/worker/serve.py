"""The serve loop: Kafka in and out around the straight path, a service hosted by the Faust worker.

Why not a Faust agent: a plain agent paid ~215 us of stream machinery per event when this loop
was written, 9x a hand-written aiokafka loop. This loop is that hand-written loop, made safe:
it owns an aiokafka consumer (group ``<app id>-serve``) and producer, serves each fetched
batch synchronously, sends outputs in one batch per partition, and commits an input offset only
after Kafka acknowledged every output of the batch that contains it (at-least-once, per-partition
order). It starts and stops with the Faust app, shares its settings, metrics and web server.

The consumer reads ``features``, ``labels`` and the internal join topic with the range assignor, so
partition *p* of all three lands on the same worker: whatever partition a served event or a label
arrived on, the join topic brings it to partition *p* = its id's home
(:mod:`stream_app.core.route`), where it meets its counterpart. What happens to each record is
:mod:`stream_app.core.pipeline`'s business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.role import WriterRole
from stream_app.kafka.emit import Emitter
from stream_app.kafka.publish import Publisher
from stream_app.kafka.topics import ensure_topics
from stream_app.settings import Settings
from stream_app.worker.batches import BatchServing
from stream_app.worker.clients import Rebalance, consumer_config, producer_config
from stream_app.worker.collector import tune_collector
from stream_app.worker.keyed_store import KeyedStore
from stream_app.worker.owners import OwnersAssignor
from stream_app.worker.restore import restore_home
from stream_app.worker.retrain import Retrainer
from stream_app.worker.versions import VersionKeeper

__all__ = ["ServeLoop"]

log = logging.getLogger(__name__)


class ServeLoop(BatchServing, mode.Service):
    """Consume feature events, answer each with a prediction or a dead letter, commit if durable.

    It owns the writer ``role`` (the pipeline, the keeper and the web views read it): the worker
    that holds the commands partition is the writer. Its producer sends for ``publisher``.
    """

    wait_for_shutdown = True

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        metrics: Metrics,
        keeper: VersionKeeper,
        role: WriterRole,
        publisher: Publisher,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.keeper = keeper
        self.role = role
        self.publisher = publisher
        self.group_id = f"{settings.app.id}-serve"
        self.assignment: frozenset[TopicPartition] | None = None
        """Partitions this worker serves; ``None`` until it has joined the consumer group."""
        self._lock = asyncio.Lock()
        self.retrainer = Retrainer(settings, pipeline, keeper, self._lock)
        self._acked: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._lag_reported: set[TopicPartition] = set()
        self._last_contact = time.monotonic()
        """When the broker last answered the watcher (monotonic seconds)."""
        self._outage_logged = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._emitter: Emitter | None = None
        self.keyed: KeyedStore | None = None
        """The keyed models' store (stream_app.worker.keyed_store), with ``model.key_field`` set."""
        self.owners = OwnersAssignor(settings.advertised_address, settings.topics.features)
        """The group's assignor; ``owners.table``: who serves each partition (keyed HTTP)."""

    @property
    def broker_silence_s(self) -> float:
        """Seconds since the broker last answered (the watcher asks every ``lag_interval_s``)."""
        return time.monotonic() - self._last_contact

    @property
    def unhealthy_reason(self) -> str | None:
        """Why this worker cannot serve now (starting, stopping, broker away), or None if it can."""
        if self.should_stop:
            return "stopping"
        silence, limit = self.broker_silence_s, self.settings.serve.broker_timeout_s
        if silence > limit:
            return f"the broker has not answered for {silence:.1f}s (more than {limit:g}s)"
        if self.assignment is None:
            return "starting: not yet given partitions by the consumer group"
        return None

    @property
    def healthy(self) -> bool:
        """True while the worker holds its share of partitions and the broker answers."""
        return self.unhealthy_reason is None

    async def on_start(self) -> None:
        """Create missing topics, then start the producer and the consumer."""
        s = self.settings
        await ensure_topics(s)
        await ensure_topics(
            s, [s.commands_topic, s.examples_topic, s.learning_log_topic], partitions=1
        )
        self._producer = AIOKafkaProducer(**producer_config(s))
        await self._producer.start()
        self.publisher.attach(self._producer)
        self.role.assign(writer=False)  # until this worker is given the commands partition
        self.pipeline.output_partitions = len(
            await self._producer.partitions_for(s.topics.predictions)
        )
        self.pipeline.partitions = len(await self._producer.partitions_for(s.topics.features))
        if s.learn.enabled or s.model.key_field:  # (keyed events go home through it too)
            await ensure_topics(s, [s.join_topic], partitions=self.pipeline.partitions)
        if s.model.key_field:
            self.keyed = await KeyedStore.start(s, self.pipeline, self.metrics)
        self._emitter = Emitter(self._producer, tracked=s.learning_log_topic)
        self._consumer = AIOKafkaConsumer(**consumer_config(s, self.group_id, self.owners))
        topics = [s.topics.features, s.commands_topic]
        if s.learn.enabled:
            topics += [s.topics.labels, s.examples_topic]
        if s.learn.enabled or s.model.key_field:
            topics += [s.join_topic, *([s.key_commands_topic] if s.model.key_field else [])]
        self._consumer.subscribe(topics, listener=Rebalance(self))
        await self._consumer.start()
        self._last_contact = time.monotonic()
        tune_collector(s.serve.gc_threshold)  # (once all that the worker holds while it runs is)
        model = self.pipeline.learner.serving.model
        log.info(
            "serving %s -> %s as group %s (model %s v%d, %s, learning %s)",
            s.topics.features,
            s.topics.predictions,
            self.group_id,
            model.name,
            model.version,
            model.task,
            "on" if s.learn.enabled else "off",
        )

    @mode.Service.task
    async def _serve(self) -> None:
        """Fetch batches until stopped; each batch is served and acknowledged under the lock."""
        assert self._consumer is not None
        s = self.settings.serve
        try:
            while not self.should_stop:
                try:
                    batches = await self._consumer.getmany(
                        timeout_ms=s.poll_timeout_ms, max_records=s.max_poll_records
                    )
                except KafkaError as exc:
                    log.warning("fetch failed (%s); retrying in %.1fs", exc, s.retry_backoff_s)
                    await asyncio.sleep(s.retry_backoff_s)
                    continue
                async with self._lock:
                    if batches or len(self.pipeline.early):  # held labels expire on time
                        await self._serve_batches(batches)
                    if self._emitter is not None and self._emitter.settled:
                        await self.keeper.maybe_checkpoint()
                    if self.role.is_writer:
                        self.retrainer.maybe_start()
                    await self._commit(force=False)
        finally:
            self.set_shutdown()

    @mode.Service.task
    async def _watch_broker(self) -> None:
        """Every ``lag_interval_s``: ask the broker for end offsets, report lag and contact."""
        s = self.settings.serve
        while not self.should_stop:
            await self.sleep(s.lag_interval_s)
            try:
                await asyncio.wait_for(self._report_lag(), timeout=s.broker_timeout_s)
            except (KafkaError, TimeoutError) as exc:
                if not self._outage_logged and self.broker_silence_s > s.broker_timeout_s:
                    self._outage_logged = True
                    log.warning("the broker is unreachable (%s); reconnecting", repr(exc))
                continue
            if self._outage_logged:
                self._outage_logged = False
                log.info("the broker answers again")

    async def _report_lag(self) -> None:
        """Set ``consumer_lag`` of each assigned partition from its end offset and our position."""
        assert self._consumer is not None
        assigned = set(self._consumer.assignment())
        # With no partition to ask about, the first features partition still proves contact.
        probe = assigned or {TopicPartition(self.settings.topics.features, 0)}
        ends = await self._consumer.end_offsets(sorted(probe))
        self._last_contact = time.monotonic()
        for tp in self._lag_reported - assigned:
            self._lag_reported.discard(tp)
            self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        examples = TopicPartition(self.settings.examples_topic, 0)
        for tp in sorted(assigned):
            if tp in ends and tp in self._consumer.assignment():
                lag = max(ends[tp] - await self._consumer.position(tp), 0)
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
                self._lag_reported.add(tp)
                if tp == examples:  # the writer: what it has not learned yet
                    self.pipeline.set_learner_lag(examples=lag, seconds=None if lag else 0.0)
        if examples not in assigned:  # not the writer (any more): it is behind nothing
            self.pipeline.set_learner_lag(examples=0, seconds=0.0)

    @mode.Service.task
    async def _follow_versions(self) -> None:
        """Apply pins and the writer's new versions as the registry changes."""
        await self.keeper.follow(self._lock)

    async def on_shutdown(self) -> None:
        """Checkpoint (the writer), commit what was acknowledged, close the clients."""
        await self.retrainer.settle()
        await self.keeper.settle()
        async with self._lock:
            dirty = self.keeper.checkpointer.dirty(self.pipeline.learner)
            log.info(
                "shutting down (%s, %s)",
                "the writer" if self.role.is_writer else "not the writer",
                "new examples to checkpoint" if dirty else "nothing new learned",
            )
            if self.role.is_writer and dirty:
                await self._settle_log()
                await self.keeper.checkpoint("shutdown")
            if self.keyed is not None and self._emitter is not None:
                await self.keyed.stop(self.pipeline, self._emitter)
            await self._commit(force=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _settle_log(self) -> None:
        """Send learning-log lines a failed batch left, so a checkpoint agrees with the log."""
        if self._emitter is None or self._emitter.settled:
            return
        try:
            await asyncio.gather(*await self._emitter.flush())
        except KafkaError as exc:
            log.warning("the learning log is behind the learner (%s); checkpointing anyway", exc)
            self._emitter.discard()
            return
        through = self._emitter.acked_through()
        if through is not None:
            self.pipeline.learner.learned_through = through

    async def _commit(self, *, force: bool) -> None:
        """Commit acknowledged offsets, at most once per ``commit_interval_s`` unless forced."""
        assert self._consumer is not None
        now = time.monotonic()
        if not force and now - self._last_commit < self.settings.serve.commit_interval_s:
            return
        self._last_commit = now
        due = {tp: off for tp, off in self._acked.items() if self._committed.get(tp) != off}
        if not due:
            return
        try:
            await self._consumer.commit(due)
        except KafkaError as exc:
            # Another member owns these partitions now; it re-serves from the last commit.
            log.warning("commit of %d partition(s) failed: %s", len(due), exc)
            return
        self._committed.update(due)

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Before a rebalance: commit what was acknowledged, forget the partitions we give up."""
        async with self._lock:
            if TopicPartition(self.settings.commands_topic, 0) in revoked and self.role.is_writer:
                await self._settle_log()
                await self.keeper.hand_over()
            if self.keyed is not None and self._emitter is not None:
                given_up = {
                    tp.partition for tp in revoked if tp.topic == self.settings.topics.features
                }
                await self.keyed.release(self.pipeline, given_up, self._emitter)
            await self._commit(force=True)
            for tp in revoked:
                self._acked.pop(tp, None)
                self._committed.pop(tp, None)
                if tp in self._lag_reported:
                    self._lag_reported.discard(tp)
                    self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    async def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """After a rebalance: forget partitions that left, restore those that arrived.

        Holds the serve lock: aiokafka may already fetch from the new partitions while this runs,
        and nothing may be served (or learned) before pending events are restored and the
        writer has taken over from the stored state.
        """
        async with self._lock:
            await self._assign(frozenset(assigned))

    async def _assign(self, assigned: frozenset[TopicPartition]) -> None:
        """Take over the assigned partitions (under the serve lock, see :meth:`_on_assigned`)."""
        s, pipeline, consumer = self.settings, self.pipeline, self._consumer
        assert consumer is not None
        features = s.topics.features
        before = {tp.partition for tp in self.assignment or () if tp.topic == features}
        now = {tp.partition for tp in assigned if tp.topic == features}
        for partition in before - now:
            pipeline.pending.drop_partition(partition)
            pipeline.early.drop_partition(partition)
        for partition in sorted(now - before):
            homes = [s.topics.features, s.topics.labels, s.join_topic]
            committed = {
                topic: await consumer.committed(TopicPartition(topic, partition)) for topic in homes
            }
            join = TopicPartition(s.join_topic, partition)
            if join in assigned and committed[s.join_topic] is None:
                await consumer.seek_to_beginning(join)  # internal: never skip what was sent home
            await restore_home(
                s, pipeline.pending, pipeline.early, partition, pipeline.partitions, committed
            )
        if self.keyed is not None:  # before anything is served: the keys' stored versions
            await self.keyed.assign(now)
        writer = TopicPartition(self.settings.commands_topic, 0)
        if writer in assigned and not self.role.is_writer:
            await self.keeper.become_writer()
        self.role.assign(writer=writer in assigned)
        self.assignment = assigned  # health turns green once the restored partitions can serve
        log.info("serving partitions %s of %s", sorted(now), features)
