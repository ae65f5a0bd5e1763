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
   one twin's answer matched the label, the guard keeps score by a sequential test: when those
   labels are ``witness_odds`` times likelier under "the unguarded twin wins ``witness_lead`` of
   them" than under the share it usually wins (:mod:`stream_app.core.duel`), the held-out labels
   were right (a change the cap could not see through the noise, or a model that talked itself
   into an error) and :attr:`NoiseGuard.witness_ahead` tells the owner to learn the labels it held
   out. Under steady noise the guarded twin wins: it learned fewer flipped labels; on a steady
   stream without flips the duel is a coin toss, and the test stays quiet. The twins answer and
   learn ``witness_batch`` labels at a time, with a few matrix operations
   (:mod:`stream_app.core.twins`): a change is scored at most a batch later.

Statistics learn only from examples that are learned, so outliers do not widen them; after a
feature's warm-up, one learned example in ``stats_every`` (a mean and a spread move slowly). They
live in slots (:mod:`stream_app.core.watch`): a review reads an example's watched values once, in
slot order, and compares them with the bounds by C-level passes, no Python loop per feature.

>>> from stream_app.settings import GuardSettings
>>> guard = NoiseGuard(GuardSettings(warmup=3, outlier_z=4.0), "classification")
>>> for x in (1.0, 2.0, 3.0, 2.0):
...     guard.review({"x": x}, "a", {"a": 0.9, "b": 0.1}).reason
>>> guard.review({"x": 100.0}, "a", {"a": 0.9, "b": 0.1})  # doctest: +ELLIPSIS
Verdict(reason='feature_outlier', detail="feature 'x' is 98.0 standard deviations from ...")
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

import numpy as np

from stream_app import reasons
from stream_app.core.duel import GUARDED_WON, UNGUARDED_WON, Duel
from stream_app.core.predict import class_key
from stream_app.core.twins import Twins
from stream_app.core.watch import NUMBERS, Watch, outside
from stream_app.models import DEFAULT_MAX_INDICATORS
from stream_app.settings import GuardSettings

__all__ = ["NoiseGuard", "Verdict"]

PASS_DETAIL = ""


class Verdict(NamedTuple):
    """The guard's answer: ``reason`` is None to learn, or the dead-letter reason to hold out."""

    reason: str | None
    detail: str = PASS_DETAIL


_LEARN = Verdict(None)


class NoiseGuard(Watch, Twins):
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
        self._abs_residual = 0.0  # running mean absolute residual (regression)
        self._flags: deque[bool] = deque(maxlen=settings.cap_window)
        self._flagged = 0
        self._baseline = 0.0  # long-run flagged share: a running mean, then an exponential one
        self._reviewed = 0
        self.standing_down = False
        self._classes: dict[str, int] = {}  # class key -> its index, in the order first seen
        self._start_watch()
        self._start_twins()
        self._witness_duel = Duel()  # the twins' score (stream_app.core.duel)
        self.restart_duel_window()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the twins' weights as lists: stored state holds no NumPy object."""
        state = self.__dict__.copy()
        state["_twins"] = self._twins.tolist()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also guards stored before slots, before the witness rule or the twins."""
        state.setdefault("max_features", DEFAULT_MAX_INDICATORS)
        state.setdefault("_classes", {})
        state.pop("_witness_wins", None)  # the sliding window's count (before the duel's test)
        stats = state.pop("_stats", None)  # before slots: {name: [count, mean, M2, ...]}
        bias = state.pop("_bias", [0.0, 0.0])  # before the twins' matrix: their intercepts
        twins = state.pop("_twins", None)
        self.__dict__.update(state)
        if stats is not None:
            self._slots_from(stats)
            self._twins_from(bias, list(stats.values()))
        else:
            self._twins = np.array(twins, dtype=float).reshape(len(twins), 1 + len(self._names))
            if "_rows" not in state:
                self._wait()
        if "_witness_duel" not in state:  # stored with the sliding window, or before the witness
            self._duel_from(self.__dict__.pop("_duel", None))

    def restart_duel_window(self) -> None:
        """Start the score afresh: no evidence either way (the long-run win share is kept).

        The guarded twin takes the unguarded one's weights: the owner took the witness's state.
        The labels waiting for the twins are learned first (their score is forgotten).
        """
        self._twins_flush()
        self._witness_duel.restart()
        self._twins[1::2] = self._twins[0::2]

    def _duel_from(self, window: deque[bool] | None) -> None:
        """Score a guard stored with the sliding window: its last contests, in order, as evidence.

        ``window``: True where the unguarded twin won (None: stored before the witness rule,
        whose duel starts afresh).
        """
        self._witness_duel = Duel()
        if window is None:
            self.restart_duel_window()
        else:
            self._score([UNGUARDED_WON if won else GUARDED_WON for won in window])

    @property
    def flagged_share(self) -> float:
        """Share of the recent window the rules flagged (held out or not)."""
        return self._flagged / len(self._flags) if self._flags else 0.0

    @property
    def witness_ahead(self) -> bool:
        """True when the duel's evidence that the unguarded twin leads reached ``witness_odds``."""
        return self._witness_duel.ahead(self.settings.witness_odds)

    def review(self, features: dict[str, Any], label: Any, served_proba_or_pred: Any) -> Verdict:
        """Judge one example; learn from its statistics if it passes.

        ``served_proba_or_pred`` is what the model answered when the event was served: the
        probabilities by class key (classification) or the predicted number (regression). This
        runs for every label: the rules read the example's watched values once, in slot order,
        and the cap's bookkeeping, the label rule for a class, keeping the label for the twins and
        the statistics' test for work are written out here (a call each saved per label).
        """
        s = self.settings
        if not s.enabled:
            return _LEARN
        if self._derived_for != (s.outlier_z, s.warmup):
            self._rederive()
        classifying = self.task == "classification"
        key = class_key(label) if classifying else ""
        values = list(map(features.get, self._names))  # in slot order, None where missing
        verdict = _LEARN
        warm = self.learned >= s.warmup
        if warm:
            if s.outliers and outside(values, self._lo, self._hi):
                verdict = self._outlier(features)
            if verdict.reason is None and s.noisy_labels:
                # a class's label rule is tested here first (it runs for every label)
                contradicted = not classifying or (
                    served_proba_or_pred
                    and served_proba_or_pred.get(key, 0.0) < 1.0 - s.label_confidence
                )
                if contradicted:
                    verdict = self._noisy(label, key, served_proba_or_pred)
        flagged = verdict.reason is not None
        flags = self._flags  # the cap: the flagged share of the recent window, and the long run
        if len(flags) == flags.maxlen and flags[0]:
            self._flagged -= 1
        flags.append(flagged)
        self._flagged += flagged
        share = self._flagged / len(flags)
        self.standing_down = share > s.cap_share or (
            self._reviewed >= s.cap_window
            and share > s.cap_floor
            and share > s.cap_ratio * self._baseline
        )
        if warm:
            self._reviewed += 1
            reviewed = self._reviewed if self._reviewed < s.cap_baseline else s.cap_baseline
            self._baseline += (flagged - self._baseline) / reviewed
        held = flagged and not self.standing_down
        if s.witness and s.noisy_labels and classifying:
            index = self._classes.get(key, -1)
            if index < 0:
                index = self._add_class(key)
            if not (held and verdict.reason == reasons.FEATURE_OUTLIER):  # else no twin learns it
                # kept for the twins (stream_app.core.twins): 1.0 for the intercept, the values;
                # the code: class * 4 + 2 (the unguarded twin learns it) + 1 (the guarded one does)
                rows = self._rows
                rows.append(1.0)
                rows.extend(values)
                codes = self._codes
                codes.append(4 * index + 2 + (not held))
                if len(codes) >= s.witness_batch:
                    self._twins_flush()
        if held:
            return verdict
        self.learned += 1
        slots = len(self._names)
        if (  # anything for the statistics to learn (Watch._absorb_values's own tests, first)
            self.learned % s.stats_every == 0
            or self._warming
            or (slots < self.max_features and (len(features) > slots or None in values))
        ):
            self._absorb_values(features, values)
        if self.task == "regression" and served_proba_or_pred is not None:
            residual = abs(label - served_proba_or_pred)
            self._abs_residual += (residual - self._abs_residual) / self.learned
        return _LEARN

    def _outlier(self, features: dict[str, Any]) -> Verdict:
        """Flag the feature furthest from its running mean, if beyond ``outlier_z``.

        Called only when a feature fell outside its bounds: the bounds are a cheap first look,
        this is the rule.
        """
        worst, worst_z, worst_mean = "", 0.0, 0.0
        warmup = self.settings.warmup
        for name, value in features.items():
            i = self._slot.get(name)
            if i is None or self._count[i] < warmup or value.__class__ not in NUMBERS:
                continue
            count, mean = self._count[i], self._mean[i]
            std = math.sqrt(self._m2[i] / (count - 1))
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

    def _noisy(self, label: Any, key: str, served: Any) -> Verdict:
        """Flag a label the served answer contradicted with high confidence, or a far residual.

        ``key`` is the label's class key (classification).
        """
        if self.task == "classification":
            if not served:
                return _LEARN
            p = served.get(key, 0.0)
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
