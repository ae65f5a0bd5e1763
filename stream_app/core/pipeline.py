"""The straight path of every message, one step per module, synchronous and broker-free.

Feature event: decode -> predict -> emit, then (if it carries a label) label -> learn, or else
route -> keep until its label comes. Delayed label: label -> route -> join -> learn. The route step
(:mod:`stream_app.core.route`) passes a served event or a label that arrived on another partition
than its id's home to that home through the join topic, so that a label finds its event whatever
client produced them; a label that comes before its event waits for it there. On a worker that is
not the single writer, "learn" means forwarding the labeled example, with the answer that was
served, to the writer's examples topic.
Learning is guard -> learn -> drift check inside :class:`~stream_app.core.learn.Learner`. Outputs
are queued on an :class:`~stream_app.kafka.emit.Emitter`; the serve loop sends them and commits the
inputs once Kafka has acknowledged them.

This module holds the feature event's path and the learning of a labeled example; the
:class:`Pipeline` takes its delayed labels from :mod:`stream_app.core.delayed` and its
forwarding from :mod:`stream_app.core.forward`, one step per module, and its ports (the
:class:`Record` it reads, the :class:`Outputs` it queues on) from :mod:`stream_app.core.ports`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from time import perf_counter
from time import time as wall_clock
from typing import Any, Final

from stream_app import reasons
from stream_app.core.decode import NO_LABEL, FeatureEvent, decode_event
from stream_app.core.delayed import DelayedLabels
from stream_app.core.events import CHALLENGER_DROPPED, ModelEvent
from stream_app.core.example import LabeledExample
from stream_app.core.forward import Forwarding
from stream_app.core.join import EarlyLabels, PendingStore, RecentIds, Served
from stream_app.core.keyed_path import KeyedPath
from stream_app.core.label import check_label
from stream_app.core.learn import Learner, Outcome
from stream_app.core.learning_log import LogBuffer
from stream_app.core.messages import encode_dead_letter, encode_model_event, encode_prediction
from stream_app.core.metrics import Metrics, observe_many
from stream_app.core.model_size import SizeWatch
from stream_app.core.ports import Forwarded, Outputs, Record
from stream_app.core.predict import Prediction
from stream_app.core.role import Role, WriterRole
from stream_app.core.route import home_partition
from stream_app.core.shed import Shedder
from stream_app.errors import RejectedMessage
from stream_app.settings import Settings

__all__ = ["Forwarded", "Outputs", "Pipeline", "Record"]  # (the ports: named here as before)

_UNLEARNED = frozenset({reasons.DUPLICATE_LABEL, reasons.UNKNOWN_LABEL, reasons.INVALID_LABEL})
"""Outcomes that leave the learner as it was: nothing to log."""

_new_example = tuple.__new__
"""Builds a :class:`LabeledExample` in one C call, once per label: a ``NamedTuple``'s own
constructor is a Python function, about 0.15 us more."""

_PLAIN_CLASSES: Final = (bool, int)
"""Labels a classifier without declared classes takes as they are: ``_learn`` skips the call to
:func:`~stream_app.core.label.check_label` (~0.15 us; a test pins the two to the same answers)."""

_US_PER_S: Final = 1e6
_US_PER_MS: Final = 1e3
"""A prediction's ``latency_ms`` is rounded to the microsecond."""

log = logging.getLogger(__name__)


class Pipeline(DelayedLabels, Forwarding, KeyedPath):
    """Serves and learns from records of the partitions this worker owns."""

    def __init__(
        self, settings: Settings, learner: Learner, metrics: Metrics, role: Role | None = None
    ) -> None:
        self.settings = settings
        self._learner = learner
        self.metrics = metrics
        self.pending = PendingStore(settings.learn.pending_ttl_s, settings.learn.pending_max)
        self.early = EarlyLabels(settings.learn.early_label_ttl_s, settings.learn.early_label_max)
        """Labels that came before their event was served, held at the id's home."""
        self.partitions = settings.topics.partitions
        """Partitions of ``features`` (the serve loop reads them): an id's home is its murmur2."""
        self.output_partitions = 0
        """Partitions of the predictions topic; a prediction goes to its event's partition."""
        self.role: Role = role if role is not None else WriterRole(writer=True)
        """Learn here (the single writer), or forward labeled examples to the writer; a pipeline
        on its own (a test, a bench) is its own writer."""
        self._taken = RecentIds(settings.learn.pending_ttl_s, settings.learn.pending_max)
        """Ids whose label this worker took: a second label for one is a duplicate."""
        self._model_errors_logged: set[str] = set()
        self._children: dict[tuple[int, str], Any] = {}
        self.shedder = Shedder(settings.learn.max_lag_s)
        """The writer's bound on its lag behind the examples followers forward."""
        self.lag_examples = 0
        """Forwarded examples the writer has not reached (from the examples topic's end offset)."""
        self.lag_seconds = 0.0
        """Age of the forwarded examples the writer reached last (0 once it has caught up)."""
        self._latencies: list[float] = []
        """Latencies of the batch being served, observed at once at its end (per batch)."""
        self._learned_count = 0
        self._log = LogBuffer(settings.serve.log_message_max_bytes)
        """Examples learned and not yet logged, in order: one learning-log message holds them
        (:meth:`close_log`), not one message per example."""
        self._rerouted = 0
        self._mismatch_logged: set[str] = set()
        self._size = SizeWatch()

    @property
    def learner(self) -> Learner:
        """The learner that serves and learns here; :meth:`use` replaces it."""
        return self._learner

    def use(self, learner: Learner) -> None:
        """Serve and learn with ``learner`` from now on: the only way the learner changes.

        A restore, a rollback or promotion of a stored version, a newer version another worker
        stored: each swaps the whole learner between batches.
        """
        self._learner = learner

    def features(self, records: Sequence[Record], received: float, out: Outputs) -> None:
        """Serve one partition's feature events in order; learn inline labels right after.

        Event mode asks the model once per event, so each prediction sees every label learned
        before it. Batch mode asks once per micro-batch of ``inference.max_batch`` events.
        """
        inference = self.settings.inference
        if self.keys is not None:  # keyed models (model.key_field): stream_app.core.keyed_path
            self.keyed_features(records, received, out)
        elif inference.mode == "batch":
            size = inference.max_batch
            for start in range(0, len(records), size):
                self._serve_batch(records[start : start + size], received, out)
        else:
            answer, limits = self._learner.answer, self.settings.limits  # (once per batch)
            for record in records:
                try:
                    event = decode_event(record.value, limits)
                    served, shadow = answer(event.features)
                except RejectedMessage as rejected:
                    self._dead_letter(out, record, rejected.reason, rejected.detail)
                    continue
                except Exception as exc:  # the estimator raised: dead-letter it, keep serving
                    self._model_error(out, record, exc)
                    continue
                self._emit(out, record, event, served, shadow, received)
        for dropped in self.learner.take_dropped():  # a challenger that raised in shadow
            self._model_event(out, dropped)
        self.metrics.events.inc(len(records))
        latencies = self._latencies
        if latencies:
            self.metrics.predictions.inc(len(latencies))
            observe_many(self.metrics.predict_latency, latencies)
            latencies.clear()
        self._report_learning(out)

    def _serve_batch(self, records: Sequence[Record], received: float, out: Outputs) -> None:
        """Decode a micro-batch, predict it with one call, then emit and learn event by event."""
        decoded: list[tuple[Record, FeatureEvent]] = []
        keep, limits = decoded.append, self.settings.limits  # (once per batch)
        for record in records:
            try:
                keep((record, decode_event(record.value, limits)))
            except RejectedMessage as rejected:
                self._dead_letter(out, record, rejected.reason, rejected.detail)
        answers: list[tuple[Prediction, Prediction | None] | None]
        try:
            answers = list(self.learner.answer_many([event.features for _, event in decoded]))
        except Exception:  # one bad row spoils a vectorised call: find it event by event
            log.debug("batch prediction raised; answering this batch event by event")
            answers = []
            for record, event in decoded:
                try:
                    answers.append(self.learner.answer(event.features))
                except Exception as exc:
                    self._model_error(out, record, exc)
                    answers.append(None)
        emit = self._emit
        for (record, event), answer in zip(decoded, answers, strict=True):
            if answer is not None:
                emit(out, record, event, answer[0], answer[1], received)
        self.learner.flush()

    def _emit(
        self,
        out: Outputs,
        record: Record,
        event: FeatureEvent,
        served: Prediction,
        shadow: Prediction | None,
        received: float,
    ) -> None:
        """Emit one prediction (and the shadow one) to the event's partition; then keep or learn."""
        latency = perf_counter() - received
        now = wall_clock()
        learner = self._learner
        model = incumbent = learner.answering
        answer = served
        if shadow is not None and learner.canary is not None and learner.canary_takes(event.id):
            assert learner.challenger is not None  # a canary is the challenger answering
            answer, model = shadow, learner.challenger.model
        event_id = event.id
        value = encode_prediction(
            event_id,
            answer.prediction,
            answer.proba,
            model.name,
            model.version,
            now,
            round(latency * _US_PER_S) / _US_PER_MS,  # (ms to the microsecond: round(, 3) is slow)
        )
        partition, key = record.partition, event_id.encode()
        out_partition = partition if partition < self.output_partitions else None
        if out_partition is None:
            out.keyed(self.settings.topics.predictions, key, value)
        else:
            out.to_partition(self.settings.topics.predictions, out_partition, key, value)
        if shadow is not None and learner.challenger is not None:
            # (In a micro-batch the challenger that answered may have been promoted or dropped
            # by a label learned earlier in the batch: then its answer has no shadow to go to.)
            self._shadow(out, out_partition, event_id, shadow, now)
        self._latencies.append(latency)
        label = event.label
        if label is not NO_LABEL:
            if self.settings.learn.enabled:
                example = _new_example(
                    LabeledExample, (event_id, event.features, label, served, shadow, now)
                )
                self._learn(out, record, example)
        elif self.settings.learn.enabled:
            version = incumbent.version  # of ``served``, even where a canary answered
            kept = Served(event.features, served.prediction, served.proba, shadow, version, now)
            home = home_partition(event_id, self.partitions)
            if home == partition:
                self._arrive(out, home, event_id, kept, now)
            else:
                self._note_mismatch("feature events", record)
                out.to_partition(*self.served_message(event_id, kept, home))

    def _learn(self, out: Outputs, record: Record, example: LabeledExample) -> None:
        """Label: validate it, then learn here (the writer) or forward it to the writer."""
        s, raw, learner = self.settings, example.label, self._learner
        kind, task = type(raw), learner.serving.model.task
        if kind in _PLAIN_CLASSES and task == "classification" and not s.model.classes:
            label = raw  # (check_label's answer, without its call: the common case)
        else:
            try:
                label = check_label(raw, task, s.model.classes, s.limits.max_string_chars)
            except RejectedMessage as rejected:
                self._reject_label(out, record, rejected.reason, rejected.detail)
                return
        if label is not raw:  # a regression label is learned as a float
            example = example.with_label(label)
        if self.role.is_writer:  # it remembers the ids it learned: a second label is a duplicate
            self._apply(out, record, example)
            return
        self._forward(out, example)

    def _apply(self, out: Outputs, record: Record, example: LabeledExample) -> None:
        """Learn (guard, learn, drift check) and log it; dead-letter what is not learned.

        Every example that reaches the learner is appended to the learning log in the order it is
        learned (held-out ones too: the guard's decisions are state), so that a writer that takes
        over, or ``models rebuild``, learns exactly the same sequence after a stored version.
        """
        try:
            outcome = self._learner.learn(example)
        except RejectedMessage as rejected:
            outcome = Outcome(False, rejected.reason, rejected.detail)
        except Exception as exc:  # the estimator raised while learning
            self._log.add(example)  # (encoded at the batch's end, with the rest: close_log)
            self._model_error(out, record, exc)
            return
        if outcome.learned:
            self._log.add(example)
            self._learned_count += 1
        else:
            if outcome.reason not in _UNLEARNED:
                self._log.add(example)
            if outcome.reason is not None:
                self._reject_label(out, record, outcome.reason, outcome.detail)
        if outcome.events:
            for model_event in outcome.events:
                self._model_event(out, model_event)

    def close_log(self, out: Outputs) -> None:
        """Queue the entries not yet queued as one learning-log message, in order.

        Each entry point calls it at its end (the serve loop once more before it flushes): a
        batch's examples go in one message, or a few past ``serve.log_message_max_bytes``. A
        checkpoint is taken only between batches once the log has acknowledged them, so a
        message's offset is a clean ``learned_through`` boundary.
        """
        for message in self._log.take():
            out.to_partition(self.settings.learning_log_topic, 0, None, message)

    def _shadow(
        self, out: Outputs, partition: int | None, event_id: str, shadow: Prediction, now: float
    ) -> None:
        """Queue the challenger's answer on the shadow topic, same shape as a prediction."""
        challenger = self.learner.challenger
        if challenger is None:
            return
        value = encode_prediction(
            event_id,
            shadow.prediction,
            shadow.proba,
            challenger.model.name,
            challenger.model.version,
            now,
            0.0,
        )
        topic = self.settings.topics.predictions_shadow
        if partition is None:
            out.keyed(topic, event_id.encode(), value)
        else:
            out.to_partition(topic, partition, event_id.encode(), value)

    def _model_event(self, out: Outputs, event: ModelEvent) -> None:
        """Queue a model event (drift, promotion) and count drifts."""
        name = self.learner.serving.model.name
        out.keyed(
            self.settings.topics.model_events,
            name.encode(),
            encode_model_event(event.kind, name, event.version, **event.fields),
        )
        if event.kind == "drift":
            self.metrics.drift_detected.inc()
        elif event.kind == CHALLENGER_DROPPED:
            self.metrics.challengers_dropped.labels(reason=event.fields["reason"]).inc()
        self.report_versions()

    def _report_learning(self, out: Outputs) -> None:
        """Log what a batch learned; count it; publish the serving and challenger models' quality.

        Once per batch, not per event: per event, these metrics cost more than the guard.
        """
        self.close_log(out)
        if self._rerouted:
            self.metrics.labels_rerouted.inc(self._rerouted)
            self._rerouted = 0
        if not self._learned_count and not self.learner.examples_seen:
            return
        self.metrics.labels_learned.inc(self._learned_count)
        self._learned_count = 0
        self.metrics.model_features.set(self._size.observe(self.learner.serving.model))
        quality = self.learner.serving.quality
        value = quality.value
        if value is not None:
            self._gauge(self.metrics.model_quality, quality.metric).set(value)
        challenger = self.learner.challenger
        if challenger is not None and challenger.quality.value is not None:
            gauge = self._gauge(self.metrics.challenger_quality, challenger.quality.metric)
            gauge.set(challenger.quality.value)

    def _gauge(self, family: Any, metric: str) -> Any:
        """Return a labelled gauge child, looked up once (``labels()`` costs microseconds)."""
        key = (id(family), metric)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(metric)
        return child

    def report_versions(self) -> None:
        """Publish which versions serve and shadow."""
        gauge, learner = self.metrics.model_version, self.learner
        name = learner.serving.model.name
        gauge.labels(name, "serving").set(learner.answering.version)
        gauge.labels(name, "shadow").set(
            learner.challenger.model.version if learner.challenger else -1
        )
        canary = learner.challenger if learner.canary is not None else None
        gauge.labels(name, "canary").set(canary.model.version if canary else -1)

    def _reject_label(self, out: Outputs, record: Record, reason: str, detail: str) -> None:
        """Dead-letter a label that is not learned, and count it as rejected."""
        self.metrics.labels_rejected.labels(reason=reason).inc()
        self._dead_letter(out, record, reason, detail)

    def _dead_letter(self, out: Outputs, record: Record, reason: str, detail: str) -> None:
        """Queue a dead letter for ``record`` with its reason and original bytes; count it."""
        value = encode_dead_letter(
            reason, detail, record.topic, record.partition, record.offset, record.value
        )
        out.keyed(self.settings.topics.dead_letters, record.key, value)
        self.metrics.dead_letters.labels(reason=reason).inc()

    def _model_error(self, out: Outputs, record: Record, exc: Exception) -> None:
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
        self._dead_letter(out, record, reasons.MODEL_ERROR, f"the model raised {kind}: {exc}")
