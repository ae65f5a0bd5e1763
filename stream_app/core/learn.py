"""The learn step: one writer that learns each labeled example once, guarded, and watches for drift.

For every label: the serving model's answer is scored (prequential: it answered before it learned),
the guard decides whether the example is learned, the drift monitor sees the error either way, and
the drift policy may start a challenger, which learns in shadow and takes over once it is better
over the same labels (the challenge step, :mod:`stream_app.core.challenge`, is the part of the
:class:`Learner` that runs it). A :class:`Learner` is pure and synchronous; the serve loop calls it.

>>> from stream_app.settings import Settings
>>> learner = Learner(Settings().replace(guard={"enabled": False}))
>>> first = learner.serving.model
>>> example = LabeledExample("e-1", {"x": 1.0}, True, Prediction(None, {}), None, at=0.0)
>>> learner.learn(example).learned
True
>>> learner.learn(example).reason
'duplicate_label'
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from stream_app import reasons
from stream_app.core import fused
from stream_app.core.canary import Canary
from stream_app.core.challenge import Challenging
from stream_app.core.drift import DriftMonitor
from stream_app.core.events import (  # (named here too, for code written before the split)
    CHALLENGER_DROPPED,
    DROPPED_LEARNING,
    DROPPED_PREDICTING,
    ModelEvent,
)
from stream_app.core.example import LabeledExample
from stream_app.core.guard import NoiseGuard, Verdict
from stream_app.core.join import RecentIds
from stream_app.core.predict import (
    Prediction,
    ServingModel,
    fresh_model,
    numeric_matrix,
    predict_many,
    predict_one,
)
from stream_app.core.quality import Quality, error_of
from stream_app.core.witness import Witness
from stream_app.models import supports_many
from stream_app.settings import Settings

__all__ = [
    "CHALLENGER_DROPPED",
    "DROPPED_LEARNING",
    "DROPPED_PREDICTING",
    "Contender",
    "Learner",
    "ModelEvent",
    "Outcome",
]

log = logging.getLogger(__name__)


class Outcome(NamedTuple):
    """What learning one label did: learned or held out (with the reason), and model events."""

    learned: bool
    reason: str | None = None
    detail: str = ""
    events: tuple[ModelEvent, ...] = ()


_PASS = Verdict(None)
"""Learn it: the verdict of a guard that is off (given without asking it)."""
_LEARNED = Outcome(True, None, _PASS.detail)
"""The outcome of most labels: learned, nothing else happened (one shared value, no allocation)."""


@dataclasses.dataclass
class Contender:
    """A model with its own guard and rolling quality: the serving one, or a challenger."""

    model: ServingModel
    guard: NoiseGuard
    quality: Quality
    labels: int = 0
    deferred: list[tuple[dict[str, Any], Any]] | None = None
    """Accepted examples waiting for one ``learn_many`` call; ``None`` = learn each at once."""
    witness: Witness | None = None
    """The unguarded model, kept lazily (``guard.witness``); not stored with the contender."""

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the witness; a restored contender starts a new one.

        The witness is a cache of the stream (up to two spans of examples) that would multiply
        a checkpoint's size.
        """
        state = self.__dict__.copy()
        state["witness"] = None
        return state

    def learn(self, features: dict[str, Any], label: Any, served: Prediction) -> Verdict:
        """Score the served answer, ask the guard, learn if it agrees; return (reason, detail)."""
        y = self.model.labels.to_model(label)
        return self.learn_coded(
            features, label, y, error_of(self.model.task, served.prediction, label), served
        )

    def learn_coded(
        self,
        features: dict[str, Any],
        label: Any,
        y: Any,
        error: float | None,
        served: Prediction,
    ) -> Verdict:
        """:meth:`learn`, given the label as the estimator learns it and the served answer's error.

        The learner has both already (it validates the label and feeds the error to the drift
        monitor): computing them once is per-label work saved.
        """
        if error is not None:
            self.quality.add(error)
        self.labels += 1
        model = self.model
        guard = self.guard
        if guard.settings.enabled:
            answer = served.proba if model.task == "classification" else served.prediction
            verdict = guard.review(features, label, answer)
        else:
            verdict = _PASS
        if verdict.reason is None:
            model.note_names(features)
            if self.deferred is None:
                fused.learn_one(model.estimator, features, y)
            else:
                self.deferred.append((features, y))
            model.examples_learned += 1
        witness = self.witness
        if witness is not None and verdict.reason != reasons.FEATURE_OUTLIER:
            due = witness.record(features, y)
            if guard.witness_ahead:
                self._adopt_witness(witness)
            elif due:
                witness.turn(model.estimator, model.examples_learned, self.deferred)
        return verdict

    def _adopt_witness(self, witness: Witness) -> None:
        """Take the witness's state: it has learned every label the guard held out as noisy.

        The guard's unguarded twin predicted the labels better than its guarded one: the held-out
        labels were right (the world changed under the noise). Deferred examples are dropped, as
        the witness learned them already.
        """
        estimator, replayed = witness.rebuild()
        log.info(
            "model %s v%d takes its witness's state after %d labels (%d replayed): the labels "
            "held out as noisy were right",
            self.model.name,
            self.model.version,
            self.labels,
            len(replayed),
        )
        self.model.estimator = estimator
        self.model.examples_learned = witness.learned_at_copy + len(replayed)
        for features, _ in replayed:
            self.model.note_names(features)
        if self.deferred:
            self.deferred = []
        self.guard.restart_duel_window()

    def flush(self) -> None:
        """Learn the deferred examples: one ``learn_many`` call where possible, else in order."""
        batch, estimator = self.deferred, self.model.estimator
        if not batch:
            return
        self.deferred = []
        matrix = None
        if supports_many(estimator, self.model.task, "learn_many"):
            matrix = numeric_matrix([x for x, _ in batch])
        if matrix is None:
            for x, y in batch:
                fused.learn_one(estimator, x, y)
            return
        import pandas as pd  # only learn_many needs a data frame library

        frame = pd.DataFrame(matrix[1], columns=matrix[0], copy=False)
        estimator.learn_many(frame, pd.Series([y for _, y in batch]))


class Learner(Challenging):
    """The single writer of one model: serving contender, optional challenger, drift monitor."""

    def __init__(self, settings: Settings, model: ServingModel | None = None) -> None:
        self.settings = settings
        self.serving = self._contender(model or fresh_model(settings.model))
        self.challenger: Contender | None = None
        self.monitor = DriftMonitor(settings.drift)
        self.next_version = self.serving.model.version + 1
        self.examples_seen = 0
        self.challenge_min_examples = 0
        """Labels the serving model must have learned for a drift to start a challenger (keys)."""
        self.learned_through = -1
        """Offset in the learning log of the last example this learner learned (-1: none)."""
        self._learned = RecentIds(settings.learn.pending_ttl_s, settings.learn.pending_max)
        self._duel: tuple[Quality, Quality] | None = None  # (serving, challenger) on shared labels
        self.pinned: ServingModel | None = None
        """A stored version that answers instead of the learner (which keeps learning)."""
        retrain = settings.retrain
        self._floor = retrain.quality_floor if retrain.policy == "quality_floor" else None
        self.beyond_floor = 0
        """Labels in a row after which the serving model's rolling quality was beyond
        ``retrain.quality_floor`` (counted only under that policy;
        :mod:`stream_app.worker.retrain`)."""
        self.dropped: list[ModelEvent] = []
        """``challenger_dropped`` events from answering, for the caller to publish (take them)."""
        self.canary: Canary | None = None
        """The challenger's rollout while it answers a share of events (stream_app.core.canary)."""
        if settings.model.challenger_factory and model is None:
            self._start_challenger(settings.model.challenger_factory)

    def snapshot(self) -> dict[str, Any]:
        """Return the whole learning state, for a checkpoint (pickled as it is)."""
        self.flush()
        return {
            "serving": self.serving,
            "challenger": self.challenger,
            "monitor": self.monitor,
            "learned": self._learned,
            "duel": self._duel,
            "examples_seen": self.examples_seen,
            "learned_through": self.learned_through,
            "canary": self.canary,
        }

    @classmethod
    def restore(cls, settings: Settings, state: dict[str, Any], next_version: int) -> Learner:
        """Rebuild a learner from :meth:`snapshot`, under the current settings."""
        learner = cls(settings, state["serving"].model)
        learner.serving = state["serving"]
        learner.challenger = state["challenger"]
        learner.monitor = state["monitor"]
        learner._learned = state["learned"]
        learner._learned.ttl_s = settings.learn.pending_ttl_s
        learner._learned.max_items = settings.learn.pending_max
        learner._duel = state["duel"]
        learner.examples_seen = state["examples_seen"]
        learner.learned_through = state.get("learned_through", -1)
        learner.canary = state.get("canary")
        learner.next_version = max(next_version, learner.next_version)
        for contender in (learner.serving, learner.challenger):
            if contender is not None:
                learner._fit(contender)
        learner.monitor.settings = settings.drift
        return learner

    def allocate_version(self, stored_latest: int) -> int:
        """Hand out the next version number, above anything stored or handed out before."""
        version = max(self.next_version, stored_latest + 1)
        self.next_version = version + 1
        return version

    def has_learned(self, event_id: str) -> bool:
        """Tell whether a label for ``event_id`` was already taken (learned or held out)."""
        return event_id in self._learned

    def shed(self, event_id: str, now: float) -> None:
        """Take a label without learning it (shed by ``learn.max_lag_s``): never learned later.

        The id is remembered as a learned one, so the same label read again, or a second label
        for the event, is refused as a duplicate rather than learned by accident.
        """
        self._learned.add(event_id, now)

    @property
    def task(self) -> str:
        """``classification`` or ``regression``."""
        return self.serving.model.task

    @property
    def answering(self) -> ServingModel:
        """The model that answers events: a pinned version if one is, else the serving model.

        The serving model learns every label either way; while a canary runs it answers its
        share of the events instead (:meth:`canary_takes`).
        """
        return self.pinned or self.serving.model

    def answer(self, features: dict[str, Any]) -> tuple[Prediction, Prediction | None]:
        """Predict with the serving (or pinned) model and, in shadow, with the challenger."""
        served = predict_one(self.answering, features)
        if self.challenger is None:
            return served, None
        try:
            return served, predict_one(self.challenger.model, features)
        except Exception as exc:  # a challenger never costs the serving model an answer
            self.dropped += self._drop_challenger(DROPPED_PREDICTING, exc)
            return served, None

    def answer_many(
        self, rows: Sequence[dict[str, Any]]
    ) -> list[tuple[Prediction, Prediction | None]]:
        """Like :meth:`answer` for a micro-batch: one vectorised call per model where it pays."""
        min_rows = self.settings.inference.many_min_rows
        served = predict_many(self.answering, rows, min_rows)
        if self.challenger is None:
            return [(answer, None) for answer in served]
        try:
            shadow = predict_many(self.challenger.model, rows, min_rows)
        except Exception as exc:  # a challenger never costs the serving model an answer
            self.dropped += self._drop_challenger(DROPPED_PREDICTING, exc)
            return [(answer, None) for answer in served]
        return list(zip(served, shadow, strict=True))

    def take_dropped(self) -> list[ModelEvent]:
        """Return (and forget) the ``challenger_dropped`` events of answering since last asked."""
        dropped, self.dropped = self.dropped, []
        return dropped

    def canary_takes(self, event_id: str) -> bool:
        """Tell whether the canary (not the incumbent) answers this event; never while pinned."""
        canary = self.canary
        return canary is not None and self.pinned is None and canary.takes(event_id)

    def flush(self) -> None:
        """Learn what ``inference.learn_many`` deferred (after a batch, before a swap or a save)."""
        self.serving.flush()
        if self.challenger is not None:
            try:
                self.challenger.flush()
            except Exception as exc:  # the challenger's batch failed: drop it, keep serving
                self.dropped += self._drop_challenger(DROPPED_LEARNING, exc)

    def learn(self, example: LabeledExample) -> Outcome:
        """Learn one labeled example at most once; raise ``RejectedMessage`` for an unfit label."""
        event_id, label, served = example.event_id, example.label, example.served
        learned = self._learned
        if event_id in learned:
            return Outcome(
                False, reasons.DUPLICATE_LABEL, f"event {event_id!r:.60} was learned already"
            )
        serving = self.serving
        model = serving.model
        y = model.labels.to_model(label)  # a binary model refuses a third class here
        learned.add(event_id, example.at)
        self.examples_seen += 1
        error = error_of(model.task, served.prediction, label)
        verdict = serving.learn_coded(example.features, label, y, error, served)
        if self._floor is not None:
            self._watch_floor(self._floor)
        events: list[ModelEvent] | None = None
        if self.challenger is not None:
            events = self._challenge(example, error)
        if error is not None and self.monitor.update(error):
            events = (events or []) + self._on_drift(example.at)
        if not events:
            if verdict.reason is None and verdict.detail == _PASS.detail:
                return _LEARNED
            return Outcome(verdict.reason is None, verdict.reason, verdict.detail)
        return Outcome(verdict.reason is None, verdict.reason, verdict.detail, tuple(events))

    def _watch_floor(self, floor: float) -> None:
        """Count the labels in a row after which the rolling quality was beyond ``floor``."""
        quality = self.serving.quality
        value = quality.value
        beyond = value is not None and (
            value < floor if quality.metric == "accuracy" else value > floor
        )
        self.beyond_floor = self.beyond_floor + 1 if beyond else 0

    def _contender(self, model: ServingModel) -> Contender:
        """Wrap a model with a fresh guard, quality window and (if configured) witness."""
        guard = NoiseGuard(self.settings.guard, model.task, self.settings.model.max_indicators)
        quality = Quality(model.task, self.settings.learn.quality_window)
        return self._fit(Contender(model, guard, quality))

    def _fit(self, contender: Contender) -> Contender:
        """Apply the current settings to a (new, restored or stored) contender's guard."""
        g = self.settings.guard
        contender.guard.settings = g
        contender.deferred = self._deferred()
        wanted = (
            g.enabled and g.noisy_labels and g.witness and contender.model.task == "classification"
        )
        if not wanted:
            contender.witness = None
        elif not isinstance(contender.witness, Witness):  # new, restored, or stored before it
            model = contender.model
            contender.witness = Witness(model.estimator, model.examples_learned, g.witness_span)
        else:
            contender.witness.span = g.witness_span
        return contender

    def _deferred(self) -> list[tuple[dict[str, Any], Any]] | None:
        """Return an empty deferral list when batch mode learns with ``learn_many``, else None."""
        inference = self.settings.inference
        return [] if inference.mode == "batch" and inference.learn_many else None
