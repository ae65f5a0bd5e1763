"""The delayed-label step: bring a label and its served event to the id's home, and join them there.

A label and its event meet at the home partition of the event's id (murmur2, as the Java client
partitions; :mod:`stream_app.core.route`). A label read on another partition, or an event served
on one (or over HTTP), travels there through the join topic. At home, a label learns with the
answer that was kept for its event (:class:`~stream_app.core.join.PendingStore`); a label that
comes first waits as an early label (:class:`~stream_app.core.join.EarlyLabels`) and is
dead-lettered, saying where it was looked for, if its event does not come in time.

:class:`DelayedLabels` is the part of :class:`~stream_app.core.pipeline.Pipeline` that does this;
the pipeline's state it works on is declared in its body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from stream_app import reasons
from stream_app.core.join import EarlyLabel, Served, Source
from stream_app.core.label import decode_label
from stream_app.core.messages import decode_join, encode_join_label, encode_join_served
from stream_app.core.ports import Outputs, Record
from stream_app.core.predict import Prediction
from stream_app.core.route import PARTITIONER_FIX, home_partition, partitioner_of
from stream_app.errors import RejectedMessage

if TYPE_CHECKING:
    from stream_app.core.example import LabeledExample
    from stream_app.core.join import EarlyLabels, PendingStore, RecentIds
    from stream_app.core.keyed import KeyedModels
    from stream_app.core.learn import Learner
    from stream_app.core.metrics import Metrics
    from stream_app.settings import Settings

__all__ = ["DelayedLabels"]

log = logging.getLogger(__name__)


class DelayedLabels:
    """The delayed labels of a :class:`~stream_app.core.pipeline.Pipeline`: join, hold, expire."""

    if TYPE_CHECKING:  # the pipeline's state and steps this part works with (the Pipeline has them)
        settings: Settings

        @property
        def learner(self) -> Learner:
            """The learner the pipeline serves with (swapped only by ``Pipeline.use``)."""

        metrics: Metrics
        partitions: int
        pending: PendingStore
        early: EarlyLabels
        _taken: RecentIds
        _rerouted: int
        _mismatch_logged: set[str]

        keys: KeyedModels | None  # keyed models (stream_app.core.keyed_path), or None

        def _learn(self, out: Outputs, record: Record, example: LabeledExample) -> None: ...
        def learn_keyed(
            self, out: Outputs, record: Record, example: LabeledExample, key: str
        ) -> None:
            """Teach a keyed model (:mod:`stream_app.core.keyed_path`)."""

        def keyed_labels(self, records: Sequence[Record], out: Outputs) -> None:
            """Take delayed labels of keyed models (:mod:`stream_app.core.keyed_path`)."""

        def serve_routed(self, out: Outputs, source: Source) -> None:
            """Answer a keyed event brought home (:mod:`stream_app.core.keyed_path`)."""

        def _reject_label(self, out: Outputs, record: Record, reason: str, detail: str) -> None: ...
        def _dead_letter(self, out: Outputs, record: Record, reason: str, detail: str) -> None: ...
        def _report_learning(self, out: Outputs) -> None: ...

    def labels(self, records: Sequence[Record], out: Outputs) -> None:
        """Route each delayed label to its id's home; at home, join it to its served event."""
        if self.keys is not None:  # keyed models: a label that names its key goes to its home
            self.keyed_labels(records, out)
            return
        s = self.settings
        now = time.time()
        for record in records:
            try:
                event_id, label = decode_label(record.value, s.limits)
            except RejectedMessage as rejected:
                self._reject_label(out, record, rejected.reason, rejected.detail)
                continue
            home = home_partition(event_id, self.partitions)
            if home == record.partition:
                self._label(out, record, home, event_id, label, False, now)
                continue
            self._note_mismatch("labels", record)
            value = encode_join_label(
                event_id, label, record.topic, record.partition, record.offset, record.value
            )
            out.to_partition(s.join_topic, home, record.key or event_id.encode(), value)
        self._report_learning(out)

    def joins(self, records: Sequence[Record], out: Outputs) -> None:
        """Take served events and labels that the join topic brought to their home partition."""
        now = time.time()
        for record in records:
            try:
                message = decode_join(record.value)
                event_id: str = message["id"]
                if message["kind"] == "served":
                    shadow = message["shadow"]
                    prediction, proba = message["served"]
                    kept = Served(
                        message["features"],
                        prediction,
                        proba,
                        Prediction(*shadow) if shadow else None,
                        message["model_version"],
                        message["served_at"],
                        True,
                        message.get("model_key"),
                    )
                else:
                    where = message["source"]
                    source = Source(
                        where["topic"],
                        where["partition"],
                        where["offset"],
                        record.key,
                        message["original"],
                    )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.error("skipping a malformed join message at offset %d: %s", record.offset, exc)
                self._dead_letter(out, record, reasons.INVALID_JSON, f"not a join message: {exc}")
                continue
            if message["kind"] == "served":
                self._arrive(out, record.partition, event_id, kept, now)
            elif message["kind"] == "event":  # a keyed event, brought to its model key's home
                self.serve_routed(out, source)
            else:
                self._label(out, source, record.partition, event_id, message["label"], True, now)
        self._report_learning(out)

    def served_message(
        self, event_id: str, kept: Served, home: int
    ) -> tuple[str, int, bytes, bytes]:
        """Return the join-topic message (topic, partition, key, value) that takes ``kept`` home."""
        served = (kept.prediction, kept.proba)
        value = encode_join_served(
            event_id,
            kept.features,
            served,
            kept.shadow,
            kept.model_version,
            kept.served_at,
            kept.model_key,
        )
        return self.settings.join_topic, home, event_id.encode(), value

    def _arrive(self, out: Outputs, home: int, event_id: str, kept: Served, now: float) -> None:
        """Take a served event at its home: learn the label that waited for it, or keep it."""
        early = self.early.take(home, event_id)
        if early is None:
            self.pending.put(home, event_id, kept)
        else:
            self._joined(out, early.source, event_id, early.label, kept, early.rerouted, now)

    def _label(
        self,
        out: Outputs,
        source: Record,
        home: int,
        event_id: str,
        label: Any,
        rerouted: bool,
        now: float,
    ) -> None:
        """Take a label at its home: join it to its served event, or hold it until then."""
        kept = self.pending.take(home, event_id, now)
        if kept is not None:
            self._joined(out, source, event_id, label, kept, rerouted, now)
            return
        if (
            event_id in self._taken
            or self.learner.has_learned(event_id)
            or (home, event_id) in self.early
        ):
            detail = f"event {event_id!r:.60} has had its label already"
            self._reject_label(out, source, reasons.DUPLICATE_LABEL, detail)
            return
        where = Source(source.topic, source.partition, source.offset, source.key, source.value)
        evicted = self.early.put(home, event_id, EarlyLabel(label, where, rerouted, now))
        limit = self.settings.learn.early_label_max
        self._unjoined(out, home, evicted, f"before {limit} later labels (learn.early_label_max)")

    def _joined(
        self,
        out: Outputs,
        source: Record,
        event_id: str,
        label: Any,
        kept: Served,
        rerouted: bool,
        now: float,
    ) -> None:
        """Learn a label that met its served event, with the answer that was served."""
        if rerouted or kept.rerouted:
            self._rerouted += 1
        if kept.model_key is None:
            self._learn(out, source, kept.labeled(event_id, label, now))
        else:  # a keyed event: its label teaches its key's learner
            self.learn_keyed(out, source, kept.labeled(event_id, label, now), kept.model_key)

    def _unjoined(
        self, out: Outputs, home: int, labels: list[tuple[str, EarlyLabel]], why: str
    ) -> None:
        """Dead-letter held labels whose event did not come in time, saying where we looked."""
        for event_id, early in labels:
            src = early.source
            detail = (
                f"no event {event_id!r:.60} was served {why}; searched partition {home}, the home "
                f"of its id (murmur2), where events served on any partition or over HTTP meet "
                f"their labels; the label came on {src.topic} partition {src.partition}"
            )
            self._reject_label(out, src, reasons.LABEL_WITHOUT_EVENT, detail)

    def _note_mismatch(self, kind: str, record: Record) -> None:
        """Say once per kind that records arrive off their id's home, and how to avoid the hop."""
        if kind in self._mismatch_logged:
            return
        self._mismatch_logged.add(kind)
        log.warning(
            "%s on %s arrive on partitions other than their id's home (partition %d looks %s); "
            "they still join, through %s, at one more message each; %s",
            kind,
            record.topic,
            record.partition,
            partitioner_of(record.key, record.partition, self.partitions),
            self.settings.join_topic,
            PARTITIONER_FIX,
        )

    def expire(self, now: float, out: Outputs) -> None:
        """Drop served events whose labels can no longer come in time; dead-letter late labels."""
        self.pending.expire(now)
        self.metrics.pending_events.set(len(self.pending))
        if len(self.early):
            ttl = self.settings.learn.early_label_ttl_s
            for home, expired in self.early.expire(now).items():
                self._unjoined(out, home, expired, f"within {ttl:g}s (learn.early_label_ttl_s)")
        self.metrics.early_labels.set(len(self.early))
