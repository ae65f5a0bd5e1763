"""The guard step: decide whether a labeled example is fit to learn from.

Three rules, each switchable (see ``[guard]`` in config/default.toml):

1. *Feature outliers*: after a warm-up, an example with a numeric feature more than ``outlier_z``
   standard deviations from that feature's running mean is held out.
2. *Noisy labels*: after a warm-up, a label the model contradicted with high confidence (it gave
   the label less than ``1 - label_confidence``), or, for regression, a residual beyond
   ``residual_scale`` mean absolute residuals, is held out.
3. *The cap*: when more than ``cap_share`` of the last ``cap_window`` examples were flagged, or
   more than ``cap_ratio`` times the long-run flagged share (so that a change is seen through
   steady label noise too), the world has changed rather than the labels, and the guard stands
   down until the share falls.
4. *The witness* (classification): an unguarded copy of the model also learns the labels held out
   as noisy. Where exactly one of the two answers matched the label, the guard keeps score; when
   the witness won more than ``witness_lead`` of the last ``witness_window`` such labels, the
   held-out labels were right (a change the cap could not see through the noise, or a model that
   talked itself into an error) and :attr:`NoiseGuard.witness_ahead` tells the owner to adopt
   the witness's state. Under steady noise the guarded model wins: it learned fewer flipped labels.

Statistics learn only from examples that are learned, so outliers do not widen them.

>>> from stream_app.settings import GuardSettings
>>> guard = NoiseGuard(GuardSettings(warmup=3, outlier_z=4.0), "classification")
>>> for x in (1.0, 2.0, 3.0, 2.0):
...     guard.review({"x": x}, "a", {"a": 0.9, "b": 0.1}).reason
>>> guard.review({"x": 100.0}, "a", {"a": 0.9, "b": 0.1})  # doctest: +ELLIPSIS
Verdict(reason='feature_outlier', detail="feature 'x' is 120.0 standard deviations from ...")
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

from stream_app import reasons
from stream_app.core.predict import class_key
from stream_app.models import DEFAULT_MAX_INDICATORS
from stream_app.settings import GuardSettings

__all__ = ["NoiseGuard", "Verdict"]

PASS_DETAIL = ""


class Verdict(NamedTuple):
    """The guard's answer: ``reason`` is None to learn, or the dead-letter reason to hold out."""

    reason: str | None
    detail: str = PASS_DETAIL


_LEARN = Verdict(None)


class NoiseGuard:
    """Running statistics and rules deciding which labeled examples are learned."""

    def __init__(
        self, settings: GuardSettings, task: str, max_features: int = DEFAULT_MAX_INDICATORS
    ) -> None:
        self.settings = settings
        self.task = task
        self.learned = 0
        self.max_features = max_features
        """Most feature names with running statistics (``model.max_indicators``): names that
        churn would otherwise grow the guard, and every checkpoint, without end."""
        self._stats: dict[str, list[float]] = {}  # feature -> [count, mean, M2] (Welford)
        self._abs_residual = 0.0  # running mean absolute residual (regression)
        self._flags: deque[bool] = deque(maxlen=settings.cap_window)
        self._flagged = 0
        self._baseline = 0.0  # long-run flagged share: a running mean, then an exponential one
        self._reviewed = 0
        self.standing_down = False
        self._duel: deque[bool]  # True where the witness won
        self._witness_wins: int
        self.restart_duel_window()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also guards stored before the witness rule existed."""
        state.setdefault("max_features", DEFAULT_MAX_INDICATORS)
        self.__dict__.update(state)
        if "_duel" not in state:
            self.restart_duel_window()

    def restart_duel_window(self) -> None:
        """Start the score between model and witness afresh, sized by the current settings."""
        self._duel = deque(maxlen=self.settings.witness_window)
        self._witness_wins = 0

    @property
    def flagged_share(self) -> float:
        """Share of the recent window the rules flagged (held out or not)."""
        return self._flagged / len(self._flags) if self._flags else 0.0

    @property
    def witness_ahead(self) -> bool:
        """True when the witness won more than ``witness_lead`` of the last contested labels."""
        duel = self._duel
        return len(duel) == duel.maxlen and self._witness_wins > self.settings.witness_lead * len(
            duel
        )

    def review(
        self,
        features: dict[str, Any],
        label: Any,
        served_proba_or_pred: Any,
        witness_proba: dict[str, float] | None = None,
    ) -> Verdict:
        """Judge one example; learn from its statistics if it passes.

        ``served_proba_or_pred`` is what the model answered when the event was served: the
        probabilities by class key (classification) or the predicted number (regression).
        ``witness_proba`` is what the unguarded witness answered, if there is one.
        """
        s = self.settings
        if not s.enabled:
            return _LEARN
        if witness_proba and served_proba_or_pred:
            self._score(class_key(label), served_proba_or_pred, witness_proba)
        verdict = _LEARN
        if self.learned >= s.warmup:
            if s.outliers:
                verdict = self._outlier(features)
            if verdict.reason is None and s.noisy_labels:
                verdict = self._noisy(label, served_proba_or_pred)
        flagged = verdict.reason is not None
        if len(self._flags) == self._flags.maxlen and self._flags[0]:
            self._flagged -= 1
        self._flags.append(flagged)
        self._flagged += flagged
        share = self.flagged_share
        baseline_known = self._reviewed >= s.cap_window
        self.standing_down = share > s.cap_share or (
            baseline_known and share > s.cap_floor and share > s.cap_ratio * self._baseline
        )
        if self.learned >= s.warmup:
            self._reviewed += 1
            self._baseline += (flagged - self._baseline) / min(self._reviewed, s.cap_baseline)
        if flagged and not self.standing_down:
            return verdict
        self._absorb(features, label, served_proba_or_pred)
        return _LEARN

    def _score(self, key: str, served: dict[str, float], witness: dict[str, float]) -> None:
        """Score a label exactly one of the model and the witness predicted (the witness rule)."""
        served_right = max(served, key=served.__getitem__) == key
        witness_right = max(witness, key=witness.__getitem__) == key
        if served_right == witness_right:
            return
        duel = self._duel
        if len(duel) == duel.maxlen:
            self._witness_wins -= duel[0]
        duel.append(witness_right)
        self._witness_wins += witness_right

    def _outlier(self, features: dict[str, Any]) -> Verdict:
        """Flag the feature furthest from its running mean, if beyond ``outlier_z``."""
        worst, worst_z, worst_mean = "", 0.0, 0.0
        for name, value in features.items():
            stats = self._stats.get(name)
            if (
                stats is None
                or stats[0] < self.settings.warmup
                or value.__class__ not in (int, float)
            ):
                continue
            count, mean, m2 = stats
            std = math.sqrt(m2 / (count - 1))
            if std > 0.0:
                z = abs(value - mean) / std
                if z > worst_z:
                    worst, worst_z, worst_mean = name, z, mean
        if worst_z > self.settings.outlier_z:
            return Verdict(
                reasons.FEATURE_OUTLIER,
                f"feature {worst!r:.60} is {worst_z:.1f} standard deviations from its running "
                f"mean {worst_mean:.4g}",
            )
        return _LEARN

    def _noisy(self, label: Any, served: Any) -> Verdict:
        """Flag a label the served answer contradicted with high confidence, or a far residual."""
        if self.task == "classification":
            if not served:
                return _LEARN
            p = served.get(class_key(label), 0.0)
            if p < 1.0 - self.settings.label_confidence:
                return Verdict(
                    reasons.NOISY_LABEL,
                    f"the model gave label {label!r:.60} probability {p:.4f}",
                )
            return _LEARN
        if served is None or self._abs_residual <= 0.0:
            return _LEARN
        residual = abs(label - served)
        if residual > self.settings.residual_scale * self._abs_residual:
            return Verdict(
                reasons.NOISY_LABEL,
                f"residual {residual:.4g} is {residual / self._abs_residual:.1f} times the "
                f"running mean absolute residual {self._abs_residual:.4g}",
            )
        return _LEARN

    def _absorb(self, features: dict[str, Any], label: Any, served: Any) -> None:
        """Update the running statistics with an example that will be learned."""
        self.learned += 1
        stats_of = self._stats
        for name, value in features.items():
            if value.__class__ not in (int, float):
                continue
            stats = stats_of.get(name)
            if stats is None:
                if len(stats_of) < self.max_features:  # past the bound, new names go unwatched
                    stats_of[name] = [1.0, float(value), 0.0]
                continue
            stats[0] += 1.0
            delta = value - stats[1]
            stats[1] += delta / stats[0]
            stats[2] += delta * (value - stats[1])
        if self.task == "regression" and served is not None:
            self._abs_residual += (abs(label - served) - self._abs_residual) / self.learned
