"""The guard's twins: two small linear models that judge whether the held-out labels were right.

Both read the numeric features standardised by the guard's running statistics. The unguarded
twin learns every label but feature outliers; the guarded twin learns only the labels the guard
lets through. Where exactly one of them predicted the label, :class:`Twins` keeps the duel's score
(see :mod:`stream_app.core.guard`, rule 4). Each twin is one logit for two classes, else one per
class (one against the rest), trained by stochastic gradient descent on the log loss: a few
multiplications per feature, in place of a second model's predict and learn per label.

Their weights live in each watched feature's list of running statistics, after the statistics,
laid out (unguarded, guarded) per logit; the intercepts in ``_bias``, laid out the same way.

>>> sigmoid(0.0), round(sigmoid(1000.0), 6)
(0.5, 1.0)
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_app.settings import GuardSettings

__all__ = ["COUNT", "HI", "LO", "M2", "MEAN", "SCALE", "WEIGHTS", "Inputs", "Twins", "sigmoid"]

# A watched feature's list: Welford's running statistics (count, mean, M2), then what the review
# reads: the outlier bounds (-inf/inf while warming up) and 1/std to standardise for the twins,
# then the twins' weights, (unguarded, guarded) per logit: one logit for two classes, else one per
# class (one against the rest).
COUNT, MEAN, M2, LO, HI, SCALE, WEIGHTS = range(7)
Inputs = tuple[list[list[float]], list[float]]
"""The twins' inputs: the lists of the features they read, and those features standardised."""
_STEEPEST = 30.0
"""Logits are clipped to this size before the logistic function (which is flat beyond it)."""


def sigmoid(logit: float) -> float:
    """Return the logistic function of ``logit``, clipped so that ``exp`` cannot overflow."""
    return 1.0 / (1.0 + math.exp(-max(-_STEEPEST, min(_STEEPEST, logit))))


class Twins:
    """The twins' duel and learning, a part of :class:`~stream_app.core.guard.NoiseGuard`."""

    if TYPE_CHECKING:
        settings: GuardSettings
        _stats: dict[str, list[float]]
        _classes: dict[str, int]
        _bias: list[float]
        _duel: deque[bool]
        _witness_wins: int

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
        inputs: Inputs,
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
            step_u = rate * (sigmoid(logits[0]) - target)
            step_g = rate * (sigmoid(logits[1]) - target) if guarded else 0.0
            bias[0] -= step_u
            bias[1] -= step_g
            for stats, z in zip(watched, values, strict=True):
                stats[WEIGHTS] -= step_u * z
                stats[WEIGHTS + 1] -= step_g * z
            return
        for i, logit in enumerate(logits):
            if i % 2 == 0 or guarded:
                step = rate * (sigmoid(logit) - (1.0 if i // 2 == index else 0.0))
                bias[i] -= step
                for stats, z in zip(watched, values, strict=True):
                    stats[WEIGHTS + i] -= step * z

    def _add_class(self, key: str) -> int:
        """Give a new class its index (returned); from the third class on, one logit per class."""
        classes = self._classes
        index = classes[key] = len(classes)
        if len(classes) <= 2:
            return index
        third = len(classes) == 3  # one logit becomes one per class: the second, the first negated
        for weights, at in ((self._bias, 0), *((w, WEIGHTS) for w in self._stats.values())):
            weights.extend([-weights[at], -weights[at + 1], 0.0, 0.0] if third else [0.0, 0.0])
        return index
