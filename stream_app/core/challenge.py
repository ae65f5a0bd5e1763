"""The challenge step: a challenger learns in shadow, duels the serving model, and takes over.

A challenger (started by the drift policy, by ``model.challenger_factory``, by a retrain or by an
operator's import) answers every event in shadow and learns every label, as the serving model does.
Both are scored on the same labels in a duel window of ``drift.challenger_window``: once the
challenger is better by ``drift.promotion_margin`` it is promoted, or, under ``drift.promotion =
"canary"``, it rolls out as a canary (:mod:`stream_app.core.canary`) that answers a growing share of
the events until it serves them all or is rolled back. A challenger that has not won within
``drift.challenger_patience`` labels, or that raises, is dropped: the serving model never pays.

:class:`Challenging` is the part of :class:`~stream_app.core.learn.Learner` that does this; the
learner's state it works on is declared in its body.

>>> from stream_app.core.learn import Learner
>>> from stream_app.core.predict import fresh_model
>>> from stream_app.settings import Settings
>>> learner = Learner(Settings())
>>> learner.challenge(fresh_model(Settings().model, version=7)).model.version
7
>>> learner.promote("manual").fields
{'previous_version': 0, 'reason': 'manual'}
>>> learner.serving.model.version, learner.challenger
(7, None)
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from stream_app.core.canary import (
    CANARY_DONE,
    CANARY_ROLLBACK,
    CANARY_STEP,
    DONE,
    REGRESSED,
    ROLLBACK,
    Canary,
)
from stream_app.core.events import CHALLENGER_DROPPED, DROPPED_LEARNING, ModelEvent
from stream_app.core.example import LabeledExample
from stream_app.core.predict import Prediction, ServingModel, fresh_model
from stream_app.core.quality import Quality, error_of
from stream_app.errors import OperationRefused

if TYPE_CHECKING:
    from stream_app.core.drift import DriftMonitor
    from stream_app.core.learn import Contender
    from stream_app.settings import Settings

__all__ = ["Challenging"]

log = logging.getLogger(__name__)


class Challenging:
    """A challenger's life in a :class:`~stream_app.core.learn.Learner`: duel, canary, promotion."""

    if TYPE_CHECKING:  # the learner's state and steps this part works with (the Learner has them)
        settings: Settings
        serving: Contender
        challenger: Contender | None
        canary: Canary | None
        monitor: DriftMonitor
        examples_seen: int
        challenge_min_examples: int
        _duel: tuple[Quality, Quality] | None

        @property
        def task(self) -> str:
            """See :attr:`Learner.task`."""

        def flush(self) -> None:
            """See :meth:`Learner.flush`."""

        def allocate_version(self, stored_latest: int) -> int:
            """See :meth:`Learner.allocate_version`."""

        def _contender(self, model: ServingModel) -> Contender: ...
        def _fit(self, contender: Contender) -> Contender: ...

    def _challenge(self, example: LabeledExample, serving_error: float | None) -> list[ModelEvent]:
        """Let the challenger learn this label, score both on it, and promote if it has won."""
        challenger = self.challenger
        assert challenger is not None and self._duel is not None
        shadow = example.shadow if example.shadow is not None else Prediction(None, {})
        try:
            challenger.learn(example.features, example.label, shadow)
        except Exception as exc:  # a challenger never costs the serving model its learning
            return self._drop_challenger(DROPPED_LEARNING, exc)
        challenger_error = error_of(self.task, shadow.prediction, example.label)
        if self.canary is not None:
            return self._judge_canary(example.event_id, serving_error, challenger_error)
        if serving_error is not None and challenger_error is not None:
            self._duel[0].add(serving_error)
            self._duel[1].add(challenger_error)
        s = self.settings.drift
        serving_q, challenger_q = self._duel
        if challenger_q.full and challenger_q.better_than(serving_q, s.promotion_margin):
            if s.promotion == "canary":
                return [self.start_canary(self.settings.rollout.steps[0], "won_in_shadow")]
            return [
                self._promote(reason="challenger", serving_q=serving_q, challenger_q=challenger_q)
            ]
        if challenger.labels >= s.challenger_patience:
            log.info(
                "challenger v%d did not beat v%d in %d labels; dropped",
                challenger.model.version,
                self.serving.model.version,
                challenger.labels,
            )
            self.challenger, self._duel = None, None
        return []

    def _judge_canary(
        self, event_id: str, serving_error: float | None, challenger_error: float | None
    ) -> list[ModelEvent]:
        """Score the answer that was served on its share; step up, finish or roll back."""
        canary, challenger = self.canary, self.challenger
        assert canary is not None and challenger is not None
        on_canary = canary.takes(event_id)
        decision = canary.judge(on_canary, challenger_error if on_canary else serving_error)
        if decision is None:
            return []
        version = challenger.model.version
        if decision == ROLLBACK:
            event = self.end_canary(REGRESSED)
            self.challenger, self._duel = None, None
            return [event]
        fields = {"from_share": canary.share, **canary.fields()}
        canary.advance()
        fields["share"] = canary.share
        if decision == DONE:
            self.canary = None
            return [ModelEvent(CANARY_DONE, version, fields), self._promote("canary", None, None)]
        log.info("canary v%d steps up to %.0f%%", version, canary.share * 100)
        return [ModelEvent(CANARY_STEP, version, fields)]

    def start_canary(self, share: float, reason: str) -> ModelEvent:
        """Let the challenger answer ``share`` of the events (by id hash); return canary_step."""
        if self.challenger is None:
            raise OperationRefused("there is no challenger to roll out")
        if not 0.0 < share < 1.0:
            raise OperationRefused(f"a canary share is above 0 and below 1; got {share!r}")
        r = self.settings.rollout
        before = self.canary.share if self.canary is not None else 0.0
        window = r.window
        self.canary = Canary(
            share, r.steps, self._quality(window), self._quality(window), r.max_regression
        )
        log.warning(
            "canary: v%d answers %.0f%% of events (%s); v%d the rest",
            self.challenger.model.version,
            share * 100,
            reason,
            self.serving.model.version,
        )
        fields = {"from_share": before, **self.canary.fields(), "reason": reason}
        return ModelEvent(CANARY_STEP, self.challenger.model.version, fields)

    def end_canary(self, reason: str) -> ModelEvent:
        """Roll the canary back (the incumbent answers everything); return ``canary_rollback``.

        The challenger is dropped with it, unless the caller keeps it (an operator's abort does
        not: the version stays stored, to try again).
        """
        canary, challenger = self.canary, self.challenger
        if canary is None or challenger is None:
            raise OperationRefused("there is no canary to roll back")
        self.canary = None
        log.warning(
            "canary v%d rolled back at %.0f%% (%s); v%d answers everything",
            challenger.model.version,
            canary.share * 100,
            reason,
            self.serving.model.version,
        )
        fields = {**canary.fields(), "reason": reason}
        return ModelEvent(CANARY_ROLLBACK, challenger.model.version, fields)

    def abort_canary(self) -> ModelEvent:
        """Return to the incumbent now (an operator's decision); the challenger is dropped."""
        event = self.end_canary("abort")
        self.challenger, self._duel = None, None
        return event

    def _on_drift(self, now: float) -> list[ModelEvent]:
        """Report the drift and apply the policy: none, reset, or start a challenger.

        The ``challenger`` policy applies only to a serving model that has learned
        ``challenge_min_examples`` labels (a keyed model's ``model.key_min_examples``; 0 for the
        global one): a younger one reports the drift with ``"young": true`` and learns on.
        """
        self.flush()
        model = self.serving.model
        events = [
            ModelEvent(
                "drift",
                model.version,
                {
                    "examples_seen": self.examples_seen,
                    "detector": self.monitor.detector_name,
                    "at": now,
                },
            )
        ]
        log.warning(
            "drift in model %s v%d after %d labels (%s)",
            model.name,
            model.version,
            self.examples_seen,
            self.monitor.detector_name,
        )
        policy = self.settings.drift.policy
        if policy == "reset":
            self.challenger = self._contender(self._fresh())
            events.append(self._promote(reason="reset", serving_q=None, challenger_q=None))
        elif policy == "challenger" and self.challenger is None:
            if model.examples_learned < self.challenge_min_examples:
                events[0].fields["young"] = True  # too young for a challenger of its own
                return events
            self._start_challenger(self.settings.model.factory)
            log.info("challenger learns from the drift point in shadow")
        return events

    def _promote(
        self, reason: str, serving_q: Quality | None, challenger_q: Quality | None
    ) -> ModelEvent:
        """Make the challenger serve; the old model is retired. Returns the promotion event."""
        assert self.challenger is not None
        self.flush()
        previous = self.serving.model.version
        self.serving, self.challenger, self._duel = self.challenger, None, None
        self.canary = None
        self.monitor.reset()
        fields: dict[str, Any] = {"previous_version": previous, "reason": reason}
        if serving_q is not None and challenger_q is not None:
            fields[f"{challenger_q.metric}_challenger"] = challenger_q.value
            fields[f"{serving_q.metric}_previous"] = serving_q.value
            fields["window"] = len(challenger_q)
        log.warning(
            "model %s v%d now serves (was v%d, %s)",
            self.serving.model.name,
            self.serving.model.version,
            previous,
            reason,
        )
        return ModelEvent("promotion", self.serving.model.version, fields)

    def promote(self, reason: str) -> ModelEvent:
        """Make the challenger serve now (an operator's decision)."""
        if self.challenger is None:
            raise OperationRefused("there is no challenger to promote")
        return self._promote(reason=reason, serving_q=None, challenger_q=None)

    def replace_serving(self, contender: Contender) -> None:
        """Serve and learn with a stored contender from now on (rollback, promotion)."""
        self.flush()
        self._fit(contender)
        self.serving, self.challenger, self._duel = contender, None, None
        self.canary = None
        self.monitor.reset()

    def challenge(self, model: ServingModel) -> Contender:
        """Let ``model`` (a fresh or an imported one) learn in shadow and duel the serving model."""
        if model.task != self.task:
            raise OperationRefused(f"a {model.task} model cannot challenge a {self.task} model")
        self.flush()
        self.challenger, self.canary = self._contender(model), None
        window = self.settings.drift.challenger_window
        self._duel = (self._quality(window), self._quality(window))
        return self.challenger

    def _start_challenger(self, factory: str) -> None:
        """Start a fresh model from ``factory`` learning in shadow, dueling the serving one."""
        self.challenge(self._fresh(factory))

    def _fresh(self, factory: str | None = None) -> ServingModel:
        """Build a new model from a factory (the configured one by default), numbered next."""
        model_settings = self.settings.model
        if factory is not None and factory != model_settings.factory:
            model_settings = dataclasses.replace(model_settings, factory=factory, factory_params={})
        return fresh_model(model_settings, version=self.allocate_version(0))

    def _quality(self, window: int) -> Quality:
        """Return an empty rolling window of ``window`` labels, for a duel or a canary."""
        return Quality(self.task, window)

    def _drop_challenger(self, reason: str, exc: Exception) -> list[ModelEvent]:
        """Forget a challenger that raised; return ``challenger_dropped`` (and canary_rollback)."""
        challenger = self.challenger
        assert challenger is not None
        detail = f"{type(exc).__name__}: {exc}"
        log.error(
            "challenger v%d raised (%s) and is dropped; v%d serves on: %s",
            challenger.model.version,
            reason,
            self.serving.model.version,
            detail[:200],
        )
        events = [self.end_canary(reason)] if self.canary is not None else []
        self.challenger, self._duel = None, None
        fields = {"reason": reason, "detail": detail}
        return [ModelEvent(CHALLENGER_DROPPED, challenger.model.version, fields), *events]
