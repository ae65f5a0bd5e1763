"""The keyed path: each event is answered by its key's model, which learns at the key's home.

With ``model.key_field`` set (say ``"user"``), a feature event's top-level field of that name is
its model key (:func:`~stream_app.core.keyed.model_key`; a missing or invalid one is dead-lettered
``invalid_model_key``). The key's *home* is ``murmur2(key) % partitions``, the partition Kafka's
default partitioner gives a record keyed by the model key, which is how producers key both events
and labels (co-partitioning). The worker that owns the home serves the key's events and learns its
labels; nothing of a keyed model goes to the single writer.

- **Serve.** The key's learner answers, or, while the key has learned fewer than
  ``model.key_min_examples`` labels and ``model.key_fallback`` is ``global``, the global learner
  (``"fallback": true`` in the prediction). Every prediction carries ``"model_key"``. An event
  that arrives off its key's home on a partition whose home this worker does not own travels
  there through the join topic and is answered there.
- **Learn.** An inline label, or a delayed label that meets its served event at the home (a label
  that carries the key field is routed to the key's home; one without it joins on the partition
  it arrived on), teaches the key's learner. With the ``global`` fallback the global model learns
  the example too, as without keys (on a follower: forwarded to the single writer).
- **Checkpoint.** A key is checkpointed after ``registry.key_checkpoint_every_examples`` of its
  labels or ``registry.key_checkpoint_every_s`` seconds, when it is evicted from memory, and when
  its partition is revoked; the :class:`KeyStore` port (the worker's compacted-topic store)
  queues the version with the batch's outputs, so it is durable before the inputs are committed.
- **Drift.** Each key's guard, drift monitor and drift policy judge only its own answers; what
  happens to a key goes to ``model-events`` with its ``model_key``, and its challenger answers in
  shadow (:mod:`stream_app.core.keyed_events`).

:class:`KeyedPath` is the part of :class:`~stream_app.core.pipeline.Pipeline` that does this; the
pipeline's state it works on is declared in its body. Without keys its ``keys`` stays None and
the pipeline never enters this module.

>>> from stream_app.settings import LimitSettings
>>> decode_keyed_event(b'{"id": "e", "features": {"x": 1}, "user": "u-7"}', LimitSettings(), "user")
FeatureEvent(id='e', features={'x': 1}, ts=None, label=NO_LABEL, key='u-7')
>>> decode_keyed_label(b'{"id": "e", "label": true}', LimitSettings(), "user")
KeyedLabel(id='e', label=True, key=None)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from stream_app import reasons
from stream_app.core.decode import NO_LABEL, FeatureEvent
from stream_app.core.example import LabeledExample
from stream_app.core.join import Served, Source
from stream_app.core.keyed import (
    Answer,
    KeyedLabel,
    KeyedModels,
    KeyState,
    decode_keyed_event,
    decode_keyed_label,
    key_events,
)
from stream_app.core.keyed_batch import KeyedBatch
from stream_app.core.keyed_events import KeyedEvents
from stream_app.core.label import check_label
from stream_app.core.learn import Learner, Outcome
from stream_app.core.messages import (
    encode_join_event,
    encode_join_label,
    encode_keyed_prediction,
)
from stream_app.core.ports import KeyStore, Outputs, Record
from stream_app.core.predict import Prediction
from stream_app.core.route import home_partition
from stream_app.errors import RejectedMessage

if TYPE_CHECKING:
    from stream_app.core.join import RecentIds
    from stream_app.core.metrics import Metrics
    from stream_app.settings import Settings

__all__ = ["KeyStore", "KeyedLabel", "KeyedPath", "decode_keyed_event", "decode_keyed_label"]

log = logging.getLogger(__name__)

_MISSING: Final = object()
_NOT_TAUGHT: Final = frozenset(
    {reasons.DUPLICATE_LABEL, reasons.UNKNOWN_LABEL, reasons.INVALID_LABEL}
)
"""A key's learner refused the label itself: the global model is not taught it either."""
_NO_ANSWER: Final = Prediction(None, {})
"""What a young key's learner is told it answered when the fallback did: its quality, guard and
drift monitor judge only the key's own answers (the fallback's errors are not the key's)."""
CHECKPOINT: Final = "checkpoint"
EVICTED: Final = "evicted"
HANDOVER: Final = "handover"
"""Reasons recorded with a key's version: due by count or age, evicted from memory, revoked (and
``keyed_events.PROMOTION`` or ``RESET``: a promoted or reset model, stored at once)."""


class KeyedPath(KeyedEvents, KeyedBatch):
    """The keyed models of a :class:`~stream_app.core.pipeline.Pipeline`: serve, learn, store."""

    keys: KeyedModels | None = None
    """The keys this worker holds; None (the class default) while ``model.key_field`` is empty."""
    key_store: KeyStore | None = None

    if TYPE_CHECKING:  # the pipeline's state and steps this part works with (the Pipeline has them)
        settings: Settings

        @property
        def learner(self) -> Learner:
            """The global learner (swapped only by ``Pipeline.use``): the fallback."""

        metrics: Metrics
        partitions: int
        output_partitions: int
        _taken: RecentIds
        _latencies: list[float]
        _learned_count: int

        def _learn(self, out: Outputs, record: Record, example: LabeledExample) -> None: ...
        def _arrive(
            self, out: Outputs, home: int, event_id: str, kept: Served, now: float
        ) -> None: ...
        def _label(
            self,
            out: Outputs,
            source: Record,
            home: int,
            event_id: str,
            label: Any,
            rerouted: bool,
            now: float,
        ) -> None: ...
        def _reject_label(self, out: Outputs, record: Record, reason: str, detail: str) -> None: ...
        def _dead_letter(self, out: Outputs, record: Record, reason: str, detail: str) -> None: ...
        def _model_error(self, out: Outputs, record: Record, exc: Exception) -> None: ...
        def _note_mismatch(self, kind: str, record: Record) -> None: ...
        def _report_learning(self, out: Outputs) -> None: ...

    def use_keys(self, store: KeyStore) -> KeyedModels:
        """Serve and learn keyed models from now on, stored in ``store`` (the worker calls it)."""
        self.key_store = store
        self.keys = KeyedModels(self.settings, store.load, self._write_back)
        self._key_due: set[str] = set()
        self._keys_learning: set[str] = set()
        """Keys that learned since the last micro-batch: to flush (``inference.learn_many``)."""
        self._keys_scanned_at = time.time()
        self._fallback_answers = 0
        return self.keys

    @property
    def _fallback(self) -> Learner | None:
        """The learner that answers young keys: the global one, or None (``key_fallback=none``)."""
        return self.learner if self.settings.model.key_fallback == "global" else None

    def keyed_features(self, records: Sequence[Record], received: float, out: Outputs) -> None:
        """Serve one partition's keyed events in order: event by event, or in micro-batches.

        In batch mode (``inference.mode = "batch"``) each micro-batch of ``inference.max_batch``
        events is answered first, grouped by the model that answers them, with one call per
        group (:meth:`KeyedModels.answer_many`); then its events are emitted and their inline
        labels learned in order, as without keys. The caller (:meth:`Pipeline.features`) counts
        the batch and its latencies.
        """
        inference = self.settings.inference
        if inference.mode == "batch":
            size = inference.max_batch
            for start in range(0, len(records), size):
                self._serve_keyed_batch(records[start : start + size], received, out)
        else:
            for record in records:
                self._serve_keyed(out, record, received)
        if self._fallback_answers:
            self.metrics.key_fallback_answers.inc(self._fallback_answers)
            self._fallback_answers = 0

    def _take_keyed(self, out: Outputs, record: Record) -> tuple[FeatureEvent, str, int] | None:
        """Decode a keyed event; return it with its key and home, or dead-letter or pass it on.

        An event off its key's home, on a partition whose home this worker does not own, goes
        there through the join topic (None is returned for it, as for a dead letter).
        """
        assert self.key_store is not None
        s = self.settings
        try:
            event = decode_keyed_event(record.value, s.limits, s.model.key_field)
        except RejectedMessage as rejected:
            self._dead_letter(out, record, rejected.reason, rejected.detail)
            return None
        key = event.key
        assert key is not None
        home = home_partition(key, self.partitions)
        if home != record.partition and not self.key_store.owns(home):
            self._note_mismatch("keyed feature events", record)
            value = encode_join_event(record.topic, record.partition, record.offset, record.value)
            out.to_partition(s.join_topic, home, key.encode(), value)
            return None
        return event, key, home

    def _serve_keyed(self, out: Outputs, record: Record, received: float) -> None:
        """Answer one keyed event at its key's home, or pass it there (join topic)."""
        assert self.keys is not None
        taken = self._take_keyed(out, record)
        if taken is None:
            return
        event, key, home = taken
        try:
            answer = self.keys.answer(key, event.features, home, time.time(), self._fallback)
        except Exception as exc:  # the estimator raised: dead-letter it, keep serving
            self._model_error(out, record, exc)
            return
        self._emit_keyed(out, record, event, key, home, answer, received)

    def serve_routed(self, out: Outputs, source: Source) -> None:
        """Answer a keyed event that the join topic brought to its key's home."""
        self._serve_keyed(out, source, time.perf_counter())
        self.metrics.events.inc()
        if self._fallback_answers:
            self.metrics.key_fallback_answers.inc(self._fallback_answers)
            self._fallback_answers = 0

    def _emit_keyed(
        self,
        out: Outputs,
        record: Record,
        event: FeatureEvent,
        key: str,
        home: int,
        answer: Answer,
        received: float,
    ) -> None:
        """Emit a keyed prediction to the event's partition; then keep it or learn its label."""
        latency = time.perf_counter() - received
        now = time.time()
        served = given = answer.served
        learner, model = answer.by, answer.model
        given_by = model
        if answer.fallback:
            self._fallback_answers += 1
            shadow = None  # the global challenger's answer is not the key's challenger's
        else:
            shadow = answer.shadow
            if shadow is not None and learner.canary_takes(event.id):  # the canary's share
                assert learner.challenger is not None  # a canary is the challenger answering
                given, given_by = shadow, learner.challenger.model
            self._key_shadow(out, record.partition, event.id, key, learner, shadow, now)
        value = encode_keyed_prediction(
            event.id,
            given.prediction,
            given.proba,
            given_by.name,
            given_by.version,
            now,
            round(latency * 1000.0, 3),
            key,
            answer.fallback,
        )
        partition, event_key = record.partition, event.id.encode()
        topic = self.settings.topics.predictions
        if partition < self.output_partitions:
            out.to_partition(topic, partition, event_key, value)
        else:
            out.keyed(topic, event_key, value)
        self._latencies.append(latency)
        if not self.settings.learn.enabled:
            return
        if event.label is NO_LABEL:
            kept = Served(
                event.features,
                served.prediction,
                served.proba,
                shadow,
                model.version,
                now,
                home != record.partition,
                key,
            )
            self._arrive(out, home, event.id, kept, now)
        else:
            example = LabeledExample(event.id, event.features, event.label, served, shadow, now)
            self.learn_keyed(out, record, example, key)

    def learn_keyed(self, out: Outputs, record: Record, example: LabeledExample, key: str) -> None:
        """Teach ``key``'s learner a labeled example (and the global model, with its fallback)."""
        keys = self.keys
        assert keys is not None
        s = self.settings
        state = keys.get(key, home_partition(key, self.partitions), example.at)
        learner = state.learner
        try:
            label = check_label(
                example.label, learner.task, s.model.classes, s.limits.max_string_chars
            )
        except RejectedMessage as rejected:
            self._reject_label(out, record, rejected.reason, rejected.detail)
            return
        if label is not example.label:  # a regression label is learned as a float
            example = example.with_label(label)
        self._taken.add(example.event_id, example.at)  # a second label for the id is a duplicate
        fallback, own = self._fallback, example
        if fallback is not None and keys.young(key):  # the fallback answered, not the key's model:
            own = example._replace(served=_NO_ANSWER, shadow=None)  # not its answer to judge
        learner.challenge_min_examples = s.model.key_min_examples  # (also after a swap by hand)
        before = learner.challenger
        try:
            outcome = learner.learn(own)
        except RejectedMessage as rejected:
            outcome = Outcome(False, rejected.reason, rejected.detail)
        except Exception as exc:  # the estimator raised while learning
            self._model_error(out, record, exc)
            return
        if outcome.learned:
            keys.learned(key)
            if learner.serving.deferred is not None:  # batch mode's learn_many: flushed after it
                self._keys_learning.add(key)
            self._learned_count += 1
            if state.since_checkpoint >= s.registry.key_checkpoint_every_examples:
                self._key_due.add(key)
        elif outcome.reason is not None:
            self._reject_label(out, record, outcome.reason, outcome.detail)
        self._key_learned(out, key, state, key_events(learner, before, outcome.events), example.at)
        if fallback is not None and outcome.reason not in _NOT_TAUGHT:
            self._learn(out, record, example)  # as without keys: learn here, or forward

    def keyed_labels(self, records: Sequence[Record], out: Outputs) -> None:
        """Take delayed labels: to the key's home if they name it, else where they arrived."""
        s = self.settings
        now = time.time()
        for record in records:
            try:
                event_id, label, key = decode_keyed_label(record.value, s.limits, s.model.key_field)
            except RejectedMessage as rejected:
                self._reject_label(out, record, rejected.reason, rejected.detail)
                continue
            home = record.partition if key is None else home_partition(key, self.partitions)
            if home == record.partition:
                self._label(out, record, home, event_id, label, False, now)
                continue
            self._note_mismatch("keyed labels", record)
            value = encode_join_label(
                event_id, label, record.topic, record.partition, record.offset, record.value
            )
            out.to_partition(s.join_topic, home, record.key or event_id.encode(), value)
        self._report_learning(out)

    def checkpoint_keys(self, now: float) -> int:
        """Store the keys whose checkpoint is due; return how many (the serve loop, per batch).

        A key is due once it has learned ``registry.key_checkpoint_every_examples`` labels since
        its last version (noted as it learns), or when it has waited
        ``registry.key_checkpoint_every_s`` with some: every key in memory is looked at for that
        at most once per second, so that a batch does not pay for ten thousand keys.
        """
        keys = self.keys
        if keys is None:
            return 0
        due = self._key_due
        every_s = self.settings.registry.key_checkpoint_every_s
        if now - self._keys_scanned_at >= min(every_s, _SCAN_EVERY_S):
            self._keys_scanned_at = now
            due.update(keys.due(now))
        stored = 0
        for key in due:
            state = keys.peek(key)
            if state is not None and state.dirty:
                self._store_key(key, state, CHECKPOINT, now)
                keys.checkpointed(key, now)
                stored += 1
        due.clear()
        self.metrics.model_keys.set(len(keys))
        return stored

    def release_keys(self, partitions: Iterable[int], now: float) -> int:
        """Store the dirty keys of revoked ``partitions`` and forget them; return how many."""
        keys = self.keys
        if keys is None:
            return 0
        dirty = keys.release(partitions)
        for key, state in dirty:
            self._store_key(key, state, HANDOVER, now)
        self.metrics.model_keys.set(len(keys))
        return len(dirty)

    def _write_back(self, key: str, state: KeyState) -> None:
        """Store a dirty key that leaves memory (least recently used beyond ``model.key_cache``)."""
        self._store_key(key, state, EVICTED, time.time())

    def _store_key(self, key: str, state: KeyState, reason: str, now: float) -> None:
        """Hand one key's learner to the store as its next version, and count it."""
        assert self.key_store is not None
        self.key_store.save(key, state.partition, state.learner, reason, now)
        self.metrics.key_checkpoints.inc()


_SCAN_EVERY_S: Final = 1.0
"""At most this often, every key in memory is checked for a checkpoint due by age."""
