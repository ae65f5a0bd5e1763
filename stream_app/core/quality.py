"""The quality step: score each served answer against its label, and keep a rolling figure.

Learning is prequential: every answer is scored before its label is learned. The serving model's
rolling quality is published; a challenger's and a canary's are compared with it over the same
labels (:mod:`stream_app.core.learn`, :mod:`stream_app.core.canary`). A :class:`Quality` is stored
in versions (pickled in the learner's snapshot).
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["Quality", "error_of"]


class Quality:
    """Rolling mean error over the last ``window`` labels: accuracy (1 - error rate) or MAE.

    >>> q = Quality("classification", window=4)
    >>> for e in (1.0, 0.0, 0.0, 0.0, 0.0): q.add(e)
    >>> q.value, q.metric
    (1.0, 'accuracy')
    """

    def __init__(self, task: str, window: int) -> None:
        self.metric = "accuracy" if task == "classification" else "mae"
        self._errors: deque[float] = deque(maxlen=window)
        self._sum = 0.0

    def add(self, error: float) -> None:
        """Add one label's error (0/1 for classification, absolute error for regression)."""
        if len(self._errors) == self._errors.maxlen:
            self._sum -= self._errors[0]
        self._errors.append(error)
        self._sum += error

    def __len__(self) -> int:
        return len(self._errors)

    @property
    def window(self) -> int:
        """How many labels the rolling figure holds at most."""
        return self._errors.maxlen or 0

    def clear(self) -> None:
        """Forget every label (a new judgement starts)."""
        self._errors.clear()
        self._sum = 0.0

    @property
    def full(self) -> bool:
        """True once the window holds ``window`` labels."""
        return len(self._errors) == self._errors.maxlen

    @property
    def value(self) -> float | None:
        """Accuracy or MAE over the window, or None before the first label."""
        if not self._errors:
            return None
        mean = self._sum / len(self._errors)
        return 1.0 - mean if self.metric == "accuracy" else mean

    def better_than(self, other: Quality, margin: float) -> bool:
        """Tell whether this window's quality beats ``other``'s by more than ``margin``."""
        mine, theirs = self.value, other.value
        if mine is None or theirs is None:
            return False
        return mine > theirs + margin if self.metric == "accuracy" else mine < theirs - margin


def error_of(task: str, prediction: Any, label: Any) -> float | None:
    """Score one answer: 0/1 for classification, absolute error for regression; None if no answer.

    >>> error_of("classification", "cat", "dog"), error_of("regression", 2.0, 3.5)
    (1.0, 1.5)
    """
    if prediction is None:
        return None
    if task == "classification":
        return 0.0 if prediction == label else 1.0
    return abs(float(label) - float(prediction))
