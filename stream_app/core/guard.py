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

import copy
import math
from collections import deque
from typing import Any, NamedTuple

from stream_app import reasons
from stream_app.core.predict import class_key
from stream_app.models import DEFAULT_MAX_INDICATORS
from stream_app.settings import GuardSettings

__all__ = ["NoiseGuard", "Verdict", "Witness"]

PASS_DETAIL = ""

_NUMBERS = (int, float)
# A watched feature's list: Welford's running statistics (count, mean, M2), then what the review
# reads: the outlier bounds (-inf/inf while warming up) and 1/std to standardise for the twins,
# then the twins' weights, (unguarded, guarded) per logit: one logit for two classes, else one per
# class (one against the rest).
_COUNT, _MEAN, _M2, _LO, _HI, _SCALE, _WEIGHTS = range(7)
_Inputs = tuple[list[list[float]], list[float]]
"""The twins' inputs: the lists of the features they read, and those features standardised."""
_STEEPEST = 30.0
"""Logits are clipped to this size before the logistic function (which is flat beyond it)."""


class Verdict(NamedTuple):
    """The guard's answer: ``reason`` is None to learn, or the dead-letter reason to hold out."""

    reason: str | None
    detail: str = PASS_DETAIL


_LEARN = Verdict(None)


def _sigmoid(logit: float) -> float:
    """Return the logistic function of ``logit``, clipped so that ``exp`` cannot overflow."""
    return 1.0 / (1.0 + math.exp(-max(-_STEEPEST, min(_STEEPEST, logit))))


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
        self._stats: dict[str, list[float]] = {}  # feature -> its list (see _COUNT ... _WEIGHTS)
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
        width = _WEIGHTS + len(self._bias)
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
            stats[_WEIGHTS + 1 :: 2] = stats[_WEIGHTS::2]

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

    def _look(self, features: dict[str, Any], twins: bool) -> tuple[bool, _Inputs, list[float]]:
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
                if value < stats[_LO] or value > stats[_HI]:
                    beyond = True
                z = (value - stats[_MEAN]) * stats[_SCALE]
                if z:
                    unguarded += stats[_WEIGHTS] * z
                    guarded += stats[_WEIGHTS + 1] * z
                    watched.append(stats)
                    values.append(z)
            if not math.isfinite(unguarded + guarded):  # an infinite value: no twin learns it
                return beyond, ([], []), []
            return beyond, (watched, values), [unguarded, guarded]
        for name, value in features.items():
            stats = stats_of.get(name)
            if stats is None or value.__class__ not in _NUMBERS:
                continue
            if value < stats[_LO] or value > stats[_HI]:
                beyond = True
            if twins:
                z = (value - stats[_MEAN]) * stats[_SCALE]
                if z:
                    watched.append(stats)
                    values.append(z)
        if not twins:
            return beyond, (watched, values), []
        logits = self._bias.copy()
        for stats, z in zip(watched, values, strict=True):
            for i in range(len(logits)):
                logits[i] += stats[_WEIGHTS + i] * z
        if not math.isfinite(sum(logits)):
            return beyond, ([], []), []
        return beyond, (watched, values), logits

    def _score(self, index: int, logits: list[float]) -> None:
        """Score a label exactly one twin predicted (the witness rule); none before two classes."""
        if len(self._classes) < 2:
            return
        if len(logits) == 2:  # one logit: class 0 above 0, class 1 below
            unguarded_right = (logits[0] > 0.0) == (index == 0)
            guarded_right = (logits[1] > 0.0) == (index == 0)
        else:
            unguarded, guarded = logits[0::2], logits[1::2]
            unguarded_right = max(range(len(unguarded)), key=unguarded.__getitem__) == index
            guarded_right = max(range(len(guarded)), key=guarded.__getitem__) == index
        if unguarded_right == guarded_right:
            return
        duel = self._duel
        if len(duel) == duel.maxlen:
            self._witness_wins -= duel[0]
        duel.append(unguarded_right)
        self._witness_wins += unguarded_right

    def _twins_learn(
        self,
        inputs: _Inputs,
        index: int,
        logits: list[float],
        unguarded: bool,
        guarded: bool,
    ) -> None:
        """One step of stochastic gradient descent (log loss) for the twins that learn this.

        The unguarded twin learns all but held-out outliers; the guarded one what is learned.
        """
        if not unguarded:  # a held-out outlier: neither twin learns it
            return
        watched, values = inputs
        rate = self.settings.witness_lr
        bias = self._bias
        if len(logits) == 2:  # the usual case, in one loop
            target = 1.0 if index == 0 else 0.0
            step_u = rate * (_sigmoid(logits[0]) - target)
            step_g = rate * (_sigmoid(logits[1]) - target) if guarded else 0.0
            bias[0] -= step_u
            bias[1] -= step_g
            for stats, z in zip(watched, values, strict=True):
                stats[_WEIGHTS] -= step_u * z
                stats[_WEIGHTS + 1] -= step_g * z
            return
        for i, logit in enumerate(logits):
            if i % 2 == 0 or guarded:
                step = rate * (_sigmoid(logit) - (1.0 if i // 2 == index else 0.0))
                bias[i] -= step
                for stats, z in zip(watched, values, strict=True):
                    stats[_WEIGHTS + i] -= step * z

    def _add_class(self, key: str) -> int:
        """Give a new class its index (returned); from the third class on, one logit per class."""
        classes = self._classes
        index = classes[key] = len(classes)
        if len(classes) <= 2:
            return index
        third = len(classes) == 3  # one logit becomes one per class: the second, the first negated
        for weights, at in ((self._bias, 0), *((w, _WEIGHTS) for w in self._stats.values())):
            weights.extend([-weights[at], -weights[at + 1], 0.0, 0.0] if third else [0.0, 0.0])
        return index

    def _rederive(self) -> None:
        """Derive every feature's bounds and scale anew (new settings, or an older guard)."""
        s = self.settings
        self._warming = 0
        for stats in self._stats.values():
            self._derive(stats, s.outlier_z, s.warmup)
        self._derived_for = (s.outlier_z, s.warmup)

    def _derive(self, stats: list[float], outlier_z: float, warmup: int) -> None:
        """Set a feature's outlier bounds and 1/std from its running statistics."""
        count, mean, m2 = stats[_COUNT], stats[_MEAN], stats[_M2]
        std = math.sqrt(m2 / (count - 1)) if count > 1.0 else 0.0
        stats[_SCALE] = 1.0 / std if std > 0.0 else 0.0
        if count < warmup:
            self._warming += 1
        if count < warmup or not std > 0.0:
            stats[_LO], stats[_HI] = -math.inf, math.inf
        else:
            stats[_LO], stats[_HI] = mean - outlier_z * std, mean + outlier_z * std

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
                or stats[_COUNT] < self.settings.warmup
                or value.__class__ not in _NUMBERS
            ):
                continue
            count, mean, m2 = stats[_COUNT], stats[_MEAN], stats[_M2]
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
                count = stats[_COUNT]
                if not sampled and count >= warmup:
                    continue
                count += 1.0
                delta = value - stats[_MEAN]
                mean = stats[_MEAN] + delta / count
                m2 = stats[_M2] + delta * (value - mean)
                stats[_COUNT], stats[_MEAN], stats[_M2] = count, mean, m2
                std = sqrt(m2 / (count - 1.0))
                if count < warmup or not std > 0.0:
                    stats[_SCALE] = 1.0 / std if std > 0.0 else 0.0
                    stats[_LO], stats[_HI] = -math.inf, math.inf
                else:
                    stats[_SCALE] = 1.0 / std
                    stats[_LO], stats[_HI] = mean - outlier_z * std, mean + outlier_z * std
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


Example = tuple[dict[str, Any], Any]
"""A labelled example as the estimator learns it: (features, coded label)."""


class Witness:
    """What the model would be had it learned every label (but outliers) since a snapshot.

    Kept lazily, so that it costs nothing per label but a reference: a copy of the model's
    estimator taken every ``span`` labels, and the examples since the copy before. When the guard's
    twins find the held-out labels were right (:attr:`NoiseGuard.witness_ahead`), :meth:`rebuild`
    replays them onto that copy: the unguarded model of the last one to two spans, which the model
    then becomes. A rebuild costs up to two spans of ``learn_one``, once per change found.

    >>> class Mean:  # a stand-in estimator: the mean of what it learned
    ...     def __init__(self): self.total, self.n = 0.0, 0
    ...     def learn_one(self, x, y): self.total, self.n = self.total + y, self.n + 1
    >>> model = Mean()
    >>> witness = Witness(model, learned=0, span=2)
    >>> for y in (1.0, 2.0, 3.0, 4.0, 5.0):
    ...     if y != 3.0: model.learn_one({}, y)  # the guard held 3.0 out of the model
    ...     witness.record({}, y)
    ...     if witness.due: witness.turn(model, model.n, pending=None)
    >>> rebuilt, replayed = witness.rebuild()  # from the copy taken after 2.0: 3.0, 4.0, 5.0
    >>> rebuilt.total, rebuilt.n, len(replayed), witness.learned_at_copy
    (15.0, 5, 3, 2)
    """

    def __init__(self, estimator: Any, learned: int, span: int) -> None:
        self.span = span
        """Labels between two copies of the model's estimator."""
        copied = (copy.deepcopy(estimator), learned)
        self._older, self._newer = copied, copied  # (estimator copy, examples it had learned)
        # the examples since each copy, as two lists (features, coded labels): no tuple per label
        self._since_older: tuple[list[dict[str, Any]], list[Any]] = ([], [])
        self._since_newer: tuple[list[dict[str, Any]], list[Any]] = ([], [])

    @property
    def due(self) -> bool:
        """True when a span of labels has been recorded since the newer copy: time to turn."""
        return len(self._since_newer[0]) >= self.span

    @property
    def learned_at_copy(self) -> int:
        """Examples the model had learned when the copy a rebuild starts from was taken."""
        return self._older[1]

    def record(self, features: dict[str, Any], y: Any) -> None:
        """Remember a label the witness learns (every label but a held-out outlier)."""
        since = self._since_newer
        since[0].append(features)
        since[1].append(y)

    def turn(self, estimator: Any, learned: int, pending: list[Example] | None) -> None:
        """Copy the model's estimator now; forget what came before the older copy.

        ``pending`` are examples the model accepted but has not learned yet (batch mode's
        ``learn_many``): the copy learns them, as the model is about to.
        """
        copied = copy.deepcopy(estimator)
        for features, y in pending or ():
            copied.learn_one(features, y)
        self._older, self._since_older = self._newer, self._since_newer
        self._newer, self._since_newer = (copied, learned), ([], [])

    def rebuild(self) -> tuple[Any, list[Example]]:
        """Return a copy of the older copy that learned every example since, and those examples."""
        estimator = copy.deepcopy(self._older[0])
        older, newer = self._since_older, self._since_newer
        replayed = [*zip(older[0], older[1], strict=True), *zip(newer[0], newer[1], strict=True)]
        for features, y in replayed:
            estimator.learn_one(features, y)
        return estimator, replayed
