"""The serve loop: features -> decode -> predict -> emit, a service hosted by the Faust worker.

Why not a Faust agent: a plain agent pays ~215 us of stream machinery per event (see bench/ and
../shared/NOTES.md), 9x a hand-written aiokafka loop. This loop is that hand-written loop, made
safe: it owns an aiokafka consumer (group ``<app id>-serve``) and producer, serves each fetched
batch synchronously, sends outputs in one batch per partition, and commits an input offset only
after Kafka acknowledged every output of the batch that contains it (at-least-once, per-partition
order). It starts and stops with the Faust app, shares its settings, metrics and web server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from stream_app import reasons
from stream_app.decode import decode_event
from stream_app.emit import Emitter
from stream_app.errors import RejectedMessage
from stream_app.messages import encode_dead_letter, encode_prediction
from stream_app.metrics import Metrics
from stream_app.predict import ServingModel, predict_one
from stream_app.settings import Settings, bootstrap_servers
from stream_app.topics import ensure_topics

__all__ = ["ServeLoop"]

log = logging.getLogger(__name__)


class ServeLoop(mode.Service):
    """Consume feature events, answer each with a prediction or a dead letter, commit if durable."""

    wait_for_shutdown = True

    def __init__(
        self, settings: Settings, model: ServingModel, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.model = model
        self.metrics = metrics
        self.group_id = f"{settings.app.id}-serve"
        self.assignment: frozenset[TopicPartition] | None = None
        """Partitions this worker serves; ``None`` until it has joined the consumer group."""
        self._lock = asyncio.Lock()
        self._acked: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._model_errors_logged: set[str] = set()
        self._lag_reported: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._emitter: Emitter | None = None
        self._prediction_partitions = 0

    @property
    def healthy(self) -> bool:
        """True once the worker has joined its group and was given its share of partitions."""
        return self.assignment is not None and not self.should_stop

    async def on_start(self) -> None:
        """Create missing topics, then start the producer and the consumer."""
        s = self.settings
        await ensure_topics(s)
        servers = bootstrap_servers(s.app.broker)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=servers,
            client_id=f"{s.app.id}-serve",
            acks=-1 if s.serve.acks == "all" else int(s.serve.acks),
            enable_idempotence=s.serve.idempotence,
            linger_ms=s.serve.linger_ms,
            max_batch_size=s.serve.max_batch_bytes,
        )
        await self._producer.start()
        self._prediction_partitions = len(await self._producer.partitions_for(s.topics.predictions))
        self._emitter = Emitter(self._producer)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=servers,
            client_id=f"{s.app.id}-serve",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=s.serve.auto_offset_reset,
            fetch_max_wait_ms=s.serve.fetch_max_wait_ms,
            max_partition_fetch_bytes=s.serve.max_partition_fetch_bytes,
        )
        self._consumer.subscribe([s.topics.features], listener=_Rebalance(self))
        await self._consumer.start()
        log.info(
            "serving %s -> %s as group %s (model %s v%d, %s)",
            s.topics.features,
            s.topics.predictions,
            self.group_id,
            self.model.name,
            self.model.version,
            self.model.task,
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
                    if batches:
                        await self._serve_batches(batches)
                    await self._commit(force=False)
        finally:
            self.set_shutdown()

    async def on_shutdown(self) -> None:
        """Commit what was acknowledged, then close the clients (the group sees us leave)."""
        async with self._lock:
            await self._commit(force=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _serve_batches(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        """Serve every record, send the outputs, and mark the inputs acknowledged when durable."""
        assert self._emitter is not None and self._consumer is not None
        received = time.perf_counter()
        for tp, records in batches.items():
            self._serve_partition(tp, records, received)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max((self._consumer.highwater(tp) or 0) - records[-1].offset - 1, 0)
            )
            self._lag_reported.add(tp)
        try:
            results = await asyncio.gather(*await self._emitter.flush(), return_exceptions=True)
            failure = next((r for r in results if isinstance(r, BaseException)), None)
        except KafkaError as exc:
            failure = exc
        if failure is not None:
            self._rewind(batches, failure)
            await asyncio.sleep(self.settings.serve.retry_backoff_s)
            return
        for tp, records in batches.items():
            self._acked[tp] = records[-1].offset + 1

    def _serve_partition(self, tp: TopicPartition, records: list[Any], received: float) -> None:
        """Serve one partition's records in order: decode -> predict -> emit (the straight path)."""
        assert self._emitter is not None
        emitter, limits, model = self._emitter, self.settings.limits, self.model
        topic = self.settings.topics.predictions
        partition = tp.partition if tp.partition < self._prediction_partitions else None
        observe = self.metrics.predict_latency.observe
        served = 0
        for record in records:
            try:
                event = decode_event(record.value, limits)
                result = predict_one(model, event.features)
            except RejectedMessage as rejected:
                self._dead_letter(record, rejected.reason, rejected.detail)
                continue
            except Exception as exc:  # the estimator raised: dead-letter the event, keep serving
                self._model_error(record, exc)
                continue
            latency = time.perf_counter() - received
            value = encode_prediction(
                event.id,
                result.prediction,
                result.proba,
                model.name,
                model.version,
                time.time(),
                round(latency * 1000.0, 3),
            )
            key = event.id.encode()
            if partition is None:
                emitter.keyed(topic, key, value)
            else:
                emitter.to_partition(topic, partition, key, value)
            observe(latency)
            served += 1
        self.metrics.events.inc(len(records))
        self.metrics.predictions.inc(served)

    def _dead_letter(self, record: Any, reason: str, detail: str) -> None:
        """Queue a dead letter for ``record`` with its reason and original bytes; count it."""
        assert self._emitter is not None
        value = encode_dead_letter(
            reason, detail, record.topic, record.partition, record.offset, record.value
        )
        self._emitter.keyed(self.settings.topics.dead_letters, record.key, value)
        self.metrics.dead_letters.labels(reason=reason).inc()
        log.debug(
            "dead letter %s at %s[%d]@%d: %s",
            reason,
            record.topic,
            record.partition,
            record.offset,
            detail,
        )

    def _model_error(self, record: Any, exc: Exception) -> None:
        """Dead-letter an event the estimator raised on; log the first of each kind in full."""
        kind = type(exc).__name__
        if kind not in self._model_errors_logged:
            self._model_errors_logged.add(kind)
            log.error(
                "the model raised %s; such events go to dead letters as %s",
                kind,
                reasons.MODEL_ERROR,
                exc_info=exc,
            )
        self._dead_letter(record, reasons.MODEL_ERROR, f"the model raised {kind}: {exc}")

    def _rewind(self, batches: Mapping[TopicPartition, list[Any]], failure: BaseException) -> None:
        """Read a batch's inputs again because Kafka did not acknowledge its outputs."""
        assert self._consumer is not None and self._emitter is not None
        self._emitter.discard()
        self.metrics.delivery_failures.inc()
        log.warning(
            "Kafka did not acknowledge outputs (%s); re-reading %d partition(s)",
            failure,
            len(batches),
        )
        for tp, records in batches.items():
            self._consumer.seek(tp, records[0].offset)

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
            await self._commit(force=True)
            for tp in revoked:
                self._acked.pop(tp, None)
                self._committed.pop(tp, None)
                if tp in self._lag_reported:
                    self._lag_reported.discard(tp)
                    self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """After a rebalance: record our share of partitions (health turns green)."""
        self.assignment = frozenset(assigned)
        log.info("serving partitions %s", sorted(tp.partition for tp in self.assignment))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forward aiokafka's rebalance callbacks to the serve loop."""

    def __init__(self, loop: ServeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._loop._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._loop._on_assigned(assigned)
