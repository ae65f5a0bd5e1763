"""The guard's twins: two small linear models that judge whether the held-out labels were right.

Both read the numeric features standardised by the guard's running statistics. The unguarded
twin learns every label but feature outliers; the guarded twin learns only the labels the guard
lets through. Where exactly one of them predicted the label, :class:`Twins` scores it in the
duel's sequential test (:mod:`stream_app.core.duel`; see :mod:`stream_app.core.guard`, rule 4).
Each twin is one logit for two classes, else one per class (one against the rest), trained by
gradient descent on the log loss: a few multiplications per feature, in place of a second
model's predict and learn per label.

They work in batches of ``witness_batch`` labels: each label's watched values are kept as the
guard read them (one list ``extend``), and a batch is answered, scored and learned with a few
matrix operations (mini-batch gradient descent: each label of a batch is answered by the weights
the batch started with). Per label that costs a fraction of answering and learning one at a time
in Python, which made the twins the guard's largest cost; a change is seen at most a batch later.

Their weights are one matrix (:func:`blank`): a row per logit and twin, laid out (unguarded,
guarded) per logit; the intercept in column 0, then a weight per slot of the guard's statistics
(:mod:`stream_app.core.watch`). Pickled, it is a list of lists (no NumPy object in stored state).

>>> blank(2, 3)
array([[0., 0., 0.],
       [0., 0., 0.]])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from stream_app.core.duel import GUARDED_WON, UNGUARDED_WON, Duel, Rule
from stream_app.core.watch import NUMBERS

if TYPE_CHECKING:
    from stream_app.settings import GuardSettings

__all__ = ["Twins", "blank"]

_FLAG_SHIFTS = np.array([1, 0])
"""A label's code, shifted by these and masked by 1: whether each twin learns it."""
_ONE_LOGIT = np.array([[1.0 - 2.0 * (code < 4), (code >> 1) & 1, code & 1] for code in range(8)])
"""Two classes, by a label's code: 1 - 2 * the logit's target (class 0), and whether each twin
learns it."""
_WHO_WAS_RIGHT = np.array([UNGUARDED_WON, GUARDED_WON])
"""Whether each twin was right, times this: 1 if only the unguarded one, 2 if only the guarded."""


def blank(rows: int, slots: int) -> Any:
    """Return ``rows`` twins' weights of zero: an intercept and ``slots - 1`` feature weights."""
    return np.zeros((rows, slots))


class Twins:
    """The twins' duel and learning, a part of :class:`~stream_app.core.guard.NoiseGuard`."""

    if TYPE_CHECKING:
        settings: GuardSettings
        _classes: dict[str, int]
        _names: list[str]
        _mean: list[float]
        _scale: list[float]
        _witness_duel: Duel

    def _start_twins(self) -> None:
        """Twins that know nothing yet, and no label waiting for them."""
        self._twins: Any = blank(2, 1 + len(self._names))  # (unguarded, guarded) x (1, slots)
        self._wait()

    def _wait(self) -> None:
        """No label waiting for the twins."""
        self._rows: list[Any] = []  # per label waiting: 1.0 (the intercept), its watched values
        self._codes: list[int] = []  # per label: class * 4 + 2 (unguarded learns) + 1 (guarded)

    def _twins_flush(self) -> None:
        """Answer the waiting labels with the current weights, score them, then learn them.

        A missing or non-number value standardises to 0; a label whose answer is not finite (an
        infinite value) is neither scored nor learned.
        """
        rows, codes = self._rows, self._codes
        if not codes:
            return
        self._wait()
        try:
            values = np.array(rows, dtype=float)
        except (TypeError, ValueError):  # a value missing, or not a number
            values = np.array([v if v.__class__ in NUMBERS else math.nan for v in rows])
        values = values.reshape(len(codes), -1)
        inputs = (values - [0.0, *self._mean]) * [1.0, *self._scale]
        logits = inputs @ self._twins.T
        unusable = None
        if not math.isfinite(logits.sum()):  # a value missing (NaN: 0 standardised), or infinite
            unusable = np.isinf(values).any(axis=1)
            inputs[np.isnan(inputs)] = 0.0
            logits = inputs @ self._twins.T
            unusable |= ~np.isfinite(logits).all(axis=1)
            logits[unusable] = inputs[unusable] = 0.0
        code = np.array(codes)
        if logits.shape[1] == 2:  # one logit: class 0 is its positive class
            table = _ONE_LOGIT[code]  # (1 - 2 * target, unguarded learns, guarded learns)
            signs, learns = table[:, :1], table[:, 1:]
            right = (logits > 0.0) == (signs < 0.0)
        else:
            index = code >> 2
            signs = 1.0 - 2.0 * (index[:, None] == np.arange(logits.shape[1])[None, :] // 2)
            learns = np.tile((code[:, None] >> _FLAG_SHIFTS) & 1, (1, logits.shape[1] // 2))
            right = np.stack(
                [logits[:, 0::2].argmax(axis=1) == index, logits[:, 1::2].argmax(axis=1) == index],
                axis=1,
            )
        if unusable is not None:
            right[unusable] = True  # not contested
            learns = learns * ~unusable[:, None]
        if len(self._classes) >= 2:
            self._score((right @ _WHO_WAS_RIGHT).tolist())
        steps = np.tanh(0.5 * logits)  # (the logistic function - the target) * 2
        steps += signs
        steps *= learns
        self._twins -= (0.5 * self.settings.witness_lr * steps.T) @ inputs

    def _score(self, who_was_right: list[int]) -> None:
        """Add the labels exactly one twin predicted to the duel's test, in order (:mod:`duel`)."""
        self._witness_duel.score(who_was_right, Rule.of(self.settings))

    def _twins_widen(self) -> None:
        """Give the twins a weight of 0 for a new slot (the waiting labels are learned first)."""
        self._twins_flush()
        self._twins = np.hstack([self._twins, blank(len(self._twins), 1)])

    def _twins_from(self, bias: list[float], stats: list[list[float]]) -> None:
        """Take the twins of a guard stored before the matrix.

        ``bias``: their intercepts; ``stats``: each watched feature's statistics, which the weights
        followed from index 6 (a guard stored before the twins had none: its twins start at 0).
        """
        width = len(bias)
        rows = [
            [b, *(old[6 + i] if len(old) >= 6 + width else 0.0 for old in stats)]
            for i, b in enumerate(bias)
        ]
        self._twins = np.array(rows, dtype=float).reshape(width, 1 + len(stats))
        self._wait()

    def _add_class(self, key: str) -> int:
        """Give a new class its index (returned); from the third class on, one logit per class."""
        self._twins_flush()  # the waiting labels are answered by as many logits as they met
        classes = self._classes
        index = classes[key] = len(classes)
        if len(classes) <= 2:
            return index
        twins = self._twins
        new = [-twins[0:2]] if len(classes) == 3 else []  # the second class: the first negated
        self._twins = np.vstack([twins, *new, blank(2, twins.shape[1])])
        return index
