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
4. *The witness* (classification): two small linear models, *twins*, on the numeric features
   standardised by the guard's own running statistics. The unguarded twin learns every label but
   feature outliers; the guarded twin learns only the labels the guard lets through. Where exactly
   one twin's answer matched the label, the guard keeps score; when the unguarded twin won more
   than ``witness_lead`` of the last ``witness_window`` such labels, the held-out labels were right
   (a change the cap could not see through the noise, or a model that talked itself into an
   error) and :attr:`NoiseGuard.witness_ahead` tells the owner to learn the labels it held out.
   Under steady noise the guarded twin wins: it learned fewer flipped labels. The twins cost a
   few multiplications per feature, where an unguarded copy of the model (the witness before them)
   cost a second predict and learn per label: the same duel, fought by stand-ins.

Statistics learn only from examples that are learned, so outliers do not widen them; after a
feature's warm-up, one learned example in ``stats_every`` (a mean and a spread move slowly).

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
from stream_app.core.twins import COUNT, HI, LO, M2, MEAN, SCALE, WEIGHTS, Inputs, Twins
from stream_app.models import DEFAULT_MAX_INDICATORS
from stream_app.settings import GuardSettings

__all__ = ["NoiseGuard", "Verdict"]

PASS_DETAIL = ""

_NUMBERS = (int, float)


class Verdict(NamedTuple):
    """The guard's answer: ``reason`` is None to learn, or the dead-letter reason to hold out."""

    reason: str | None
    detail: str = PASS_DETAIL


_LEARN = Verdict(None)


class NoiseGuard(Twins):
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
        self._stats: dict[str, list[float]] = {}  # feature -> its list (see COUNT ... WEIGHTS)
        self._derived_for: tuple[float, int] | None = None  # (outlier_z, warmup) of the bounds
        self._warming = 0  # watched features whose count is below the warm-up
        self._abs_residual = 0.0  # running mean absolute residual (regression)
        self._flags: deque[bool] = deque(maxlen=settings.cap_window)
        self._flagged = 0
        self._baseline = 0.0  # long-run flagged share: a running mean, then an exponential one
        self._reviewed = 0
        self.standing_down = False
        self._classes: dict[str, int] = {}  # class key -> its index, in the order first seen
        self._bias: list[float] = [0.0, 0.0]  # the twins' intercepts, laid out as the weights
        self._duel: deque[bool]  # True where the unguarded twin won
        self._witness_wins: int
        self.restart_duel_window()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also guards stored before the witness rule or before the twins existed."""
        state.setdefault("max_features", DEFAULT_MAX_INDICATORS)
        state.setdefault("_derived_for", None)  # bounds and scales are derived on next review
        state.setdefault("_warming", 0)
        state.setdefault("_classes", {})
        state.setdefault("_bias", [0.0, 0.0])
        self.__dict__.update(state)
        width = WEIGHTS + len(self._bias)
        for stats in self._stats.values():
            if len(stats) < width:  # a guard from before the twins: [count, mean, M2]
                stats.extend([-math.inf, math.inf, 0.0])
                stats.extend([0.0] * (width - len(stats)))
        if "_duel" not in state:
            self.restart_duel_window()

    def restart_duel_window(self) -> None:
        """Start the score afresh, sized by the current settings.

        The guarded twin takes the unguarded one's weights: the owner took the witness's state.
        """
        self._duel = deque(maxlen=self.settings.witness_window)
        self._witness_wins = 0
        bias = self._bias
        bias[1::2] = bias[0::2]
        for stats in self._stats.values():
            stats[WEIGHTS + 1 :: 2] = stats[WEIGHTS::2]

    @property
    def flagged_share(self) -> float:
        """Share of the recent window the rules flagged (held out or not)."""
        return self._flagged / len(self._flags) if self._flags else 0.0

    @property
    def witness_ahead(self) -> bool:
        """True when the unguarded twin won more than ``witness_lead`` of the contested labels."""
        duel = self._duel
        return len(duel) == duel.maxlen and self._witness_wins > self.settings.witness_lead * len(
            duel
        )

    def review(self, features: dict[str, Any], label: Any, served_proba_or_pred: Any) -> Verdict:
        """Judge one example; learn from its statistics if it passes.

        ``served_proba_or_pred`` is what the model answered when the event was served: the
        probabilities by class key (classification) or the predicted number (regression).
        """
        s = self.settings
        if not s.enabled:
            return _LEARN
        if self._derived_for != (s.outlier_z, s.warmup):
            self._rederive()
        index = -1  # the label's class for the twins; -1: no twins
        if s.witness and s.noisy_labels and self.task == "classification":
            key = class_key(label)
            index = self._classes.get(key, -1)
            if index < 0:
                index = self._add_class(key)
        beyond, inputs, logits = self._look(features, index >= 0)
        if logits:
            self._score(index, logits)
        verdict = _LEARN
        if self.learned >= s.warmup:
            if s.outliers and beyond:
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
        held = flagged and not self.standing_down
        if logits:
            unguarded = not (held and verdict.reason == reasons.FEATURE_OUTLIER)
            self._twins_learn(inputs, index, logits, unguarded, not held)
        if held:
            return verdict
        self._absorb(features, label, served_proba_or_pred)
        return _LEARN

    def _look(self, features: dict[str, Any], twins: bool) -> tuple[bool, Inputs, list[float]]:
        """One pass over the features: is one outside its bounds; the twins' logits and inputs.

        Returns (beyond, (features' lists, their standardised values), logits); no logits without
        twins. Two classes, the usual case, take the fast loop: one logit for each twin.
        """
        beyond = False
        watched: list[list[float]] = []
        values: list[float] = []
        stats_of = self._stats
        if twins and len(self._bias) == 2:
            unguarded, guarded = self._bias
            for name, value in features.items():
                stats = stats_of.get(name)
                if stats is None or value.__class__ not in _NUMBERS:
                    continue
                if value < stats[LO] or value > stats[HI]:
                    beyond = True
                z = (value - stats[MEAN]) * stats[SCALE]
                if z:
                    unguarded += stats[WEIGHTS] * z
                    guarded += stats[WEIGHTS + 1] * z
                    watched.append(stats)
                    values.append(z)
            if not math.isfinite(unguarded + guarded):  # an infinite value: no twin learns it
                return beyond, ([], []), []
            return beyond, (watched, values), [unguarded, guarded]
        for name, value in features.items():
            stats = stats_of.get(name)
            if stats is None or value.__class__ not in _NUMBERS:
                continue
            if value < stats[LO] or value > stats[HI]:
                beyond = True
            if twins:
                z = (value - stats[MEAN]) * stats[SCALE]
                if z:
                    watched.append(stats)
                    values.append(z)
        if not twins:
            return beyond, (watched, values), []
        logits = self._bias.copy()
        for stats, z in zip(watched, values, strict=True):
            for i in range(len(logits)):
                logits[i] += stats[WEIGHTS + i] * z
        if not math.isfinite(sum(logits)):
            return beyond, ([], []), []
        return beyond, (watched, values), logits

    def _rederive(self) -> None:
        """Derive every feature's bounds and scale anew (new settings, or an older guard)."""
        s = self.settings
        self._warming = 0
        for stats in self._stats.values():
            self._derive(stats, s.outlier_z, s.warmup)
        self._derived_for = (s.outlier_z, s.warmup)

    def _derive(self, stats: list[float], outlier_z: float, warmup: int) -> None:
        """Set a feature's outlier bounds and 1/std from its running statistics."""
        count, mean, m2 = stats[COUNT], stats[MEAN], stats[M2]
        std = math.sqrt(m2 / (count - 1)) if count > 1.0 else 0.0
        stats[SCALE] = 1.0 / std if std > 0.0 else 0.0
        if count < warmup:
            self._warming += 1
        if count < warmup or not std > 0.0:
            stats[LO], stats[HI] = -math.inf, math.inf
        else:
            stats[LO], stats[HI] = mean - outlier_z * std, mean + outlier_z * std

    def _outlier(self, features: dict[str, Any]) -> Verdict:
        """Flag the feature furthest from its running mean, if beyond ``outlier_z``.

        Called only when a feature fell outside its bounds: the bounds are a cheap first look,
        this is the rule.
        """
        worst, worst_z, worst_mean = "", 0.0, 0.0
        for name, value in features.items():
            stats = self._stats.get(name)
            if (
                stats is None
                or stats[COUNT] < self.settings.warmup
                or value.__class__ not in _NUMBERS
            ):
                continue
            count, mean, m2 = stats[COUNT], stats[MEAN], stats[M2]
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
        """Update the running statistics with an example that will be learned.

        A feature still warming up learns every example; after, one in ``stats_every``. Between
        those, only names never seen are looked at. Welford's update and what :meth:`_derive`
        derives are written out here: this runs per feature of every learned example.
        """
        self.learned += 1
        s = self.settings
        stats_of = self._stats
        sampled = self.learned % s.stats_every == 0
        if sampled or self._warming:
            warmup, outlier_z, sqrt = s.warmup, s.outlier_z, math.sqrt
            for name, value in features.items():
                if value.__class__ not in _NUMBERS:
                    continue
                stats = stats_of.get(name)
                if stats is None:
                    self._watch(name, value)
                    continue
                count = stats[COUNT]
                if not sampled and count >= warmup:
                    continue
                count += 1.0
                delta = value - stats[MEAN]
                mean = stats[MEAN] + delta / count
                m2 = stats[M2] + delta * (value - mean)
                stats[COUNT], stats[MEAN], stats[M2] = count, mean, m2
                std = sqrt(m2 / (count - 1.0))
                if count < warmup or not std > 0.0:
                    stats[SCALE] = 1.0 / std if std > 0.0 else 0.0
                    stats[LO], stats[HI] = -math.inf, math.inf
                else:
                    stats[SCALE] = 1.0 / std
                    stats[LO], stats[HI] = mean - outlier_z * std, mean + outlier_z * std
                if count - 1.0 < warmup <= count:  # its warm-up ends with this example
                    self._warming -= 1
        elif len(stats_of) < self.max_features:
            for name in features.keys() - stats_of.keys():
                value = features[name]
                if value.__class__ in _NUMBERS:
                    self._watch(name, value)
        if self.task == "regression" and served is not None:
            self._abs_residual += (abs(label - served) - self._abs_residual) / self.learned

    def _watch(self, name: str, value: float) -> None:
        """Start the statistics of a new feature name, unless the bound is reached."""
        stats_of = self._stats
        if len(stats_of) >= self.max_features:  # past the bound, new names go unwatched
            return
        s = self.settings
        stats = [1.0, float(value), 0.0, -math.inf, math.inf, 0.0] + [0.0] * len(self._bias)
        stats_of[name] = stats
        self._derive(stats, s.outlier_z, s.warmup)
