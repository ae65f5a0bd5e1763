"""A keyed model's events and shadow answers: what happened to one key, said with its key.

Each key's learner has its own guard, drift monitor and drift policy (the ``[guard]`` and
``[drift]`` settings). What it reports goes to ``model-events`` with ``model_key`` and
``examples_seen`` (the key's labels so far): ``drift``, ``challenger_started`` (policy
``challenger``, for a key with ``model.key_min_examples`` labels), ``promotion`` (a challenger that
won, or ``"reason": "reset"``), ``challenger_dropped``, canary steps. A promoted or reset model is
stored at once as the key's next version, which its ``promotion`` event names. A key's
challenger answers in shadow on ``predictions-shadow``, with ``model_key``, as the global one
does. Metrics count the events by type (``stream_app_key_model_events_total{type}``), never by
key.

:class:`KeyedEvents` is the part of :class:`~stream_app.core.keyed_path.KeyedPath` that does this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from stream_app.core.events import CHALLENGER_DROPPED, ModelEvent
from stream_app.core.keyed import KeyedModels, KeyState
from stream_app.core.learn import Learner
from stream_app.core.messages import encode_keyed_prediction, encode_model_event
from stream_app.core.ports import Outputs
from stream_app.core.predict import Prediction

if TYPE_CHECKING:
    from stream_app.core.metrics import Metrics
    from stream_app.settings import Settings

__all__ = ["PROMOTION", "RESET", "KeyedEvents"]

PROMOTION: Final = "promotion"
RESET: Final = "reset"
"""Reasons recorded with a key's version stored at once: a challenger promoted, a model reset."""


class KeyedEvents:
    """Publish a key's model events and its challenger's shadow answers; store promotions."""

    keys: KeyedModels | None = None

    if TYPE_CHECKING:  # the pipeline's state and steps this part works with (the Pipeline has them)
        settings: Settings
        metrics: Metrics
        output_partitions: int

        def _store_key(self, key: str, state: KeyState, reason: str, now: float) -> None: ...

    def _key_learned(
        self, out: Outputs, key: str, state: KeyState, events: Iterable[ModelEvent], at: float
    ) -> None:
        """Publish the events of one label of ``key``; store a promoted or reset model at once."""
        keys, learner = self.keys, state.learner
        assert keys is not None
        for event in events:
            if event.kind == "promotion":  # stored at once; the event names that version
                reset = event.fields.get("reason") == RESET
                self._store_key(key, state, RESET if reset else PROMOTION, at)
                keys.checkpointed(key, at)
                event = event._replace(version=learner.serving.model.version)
            self._key_event(out, key, learner, event)

    def _key_event(self, out: Outputs, key: str, learner: Learner, event: ModelEvent) -> None:
        """Queue a key's model event with its ``model_key`` and ``examples_seen``; count it by type.

        One series per type, never one per key. Drifts count in
        ``stream_app_drift_detected_total`` too, dropped challengers in
        ``stream_app_challengers_dropped_total{reason}``, as the global model's do.
        """
        name = learner.serving.model.name
        fields = {"examples_seen": learner.examples_seen, **event.fields}  # where, in its labels
        value = encode_model_event(event.kind, name, event.version, model_key=key, **fields)
        out.keyed(self.settings.topics.model_events, name.encode(), value)
        self.metrics.key_model_events.labels(type=event.kind).inc()
        if event.kind == "drift":
            self.metrics.drift_detected.inc()
        elif event.kind == CHALLENGER_DROPPED:
            self.metrics.challengers_dropped.labels(reason=event.fields["reason"]).inc()

    def _key_shadow(
        self,
        out: Outputs,
        partition: int,
        event_id: str,
        key: str,
        learner: Learner,
        shadow: Prediction | None,
        now: float,
    ) -> None:
        """Queue the key's challenger's answer (if it has one) on the shadow topic, with the key."""
        for dropped in learner.take_dropped():  # its challenger raised while answering
            self._key_event(out, key, learner, dropped)
        challenger = learner.challenger
        if shadow is None or challenger is None:
            return
        model = challenger.model
        value = encode_keyed_prediction(
            event_id,
            shadow.prediction,
            shadow.proba,
            model.name,
            model.version,
            now,
            0.0,
            key,
            False,
        )
        topic = self.settings.topics.predictions_shadow
        if partition < self.output_partitions:
            out.to_partition(topic, partition, event_id.encode(), value)
        else:
            out.keyed(topic, event_id.encode(), value)
