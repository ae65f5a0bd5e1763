"""The noise guard's running statistics per numeric feature, laid out in slots for a cheap review.

Each watched feature name has a *slot*: its index in parallel lists (Welford's count, mean and M2,
then what a review reads: the outlier bounds, ``-inf``/``inf`` while warming up, and 1/std to
standardise for the twins). A review reads an example's watched values in slot order with one
C-level ``map`` and compares them with the bounds by two more (:func:`outside`): no method call,
dict lookup or list append per feature in Python. The statistics learn one learned example in
``stats_every`` after a feature's warm-up (a mean and a spread move slowly): that loop is per
feature, the only one.

>>> outside([3.0, 5.0], [0.0, -math.inf], [2.0, math.inf])  # the first is above its upper bound
True
"""

from __future__ import annotations

import math
from operator import gt, lt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream_app.settings import GuardSettings

__all__ = ["NUMBERS", "Watch", "outside"]

NUMBERS = (int, float)
"""The value classes watched (not ``bool``: a subclass of ``int``, but not a measurement)."""


def outside(values: list[Any], lows: list[float], highs: list[float]) -> bool:
    """Return True if a value lies below its lower or above its upper bound.

    ``values`` are the watched names' values as read: a missing or non-number one (None, a
    string) is never outside. A ``bool`` compares as a number here: True only means "look
    closer" (the rule itself skips it).

    >>> outside([3.0, None], [0.0, 0.0], [2.0, 2.0]), outside([1.0, "red"], [0.0, 0.0], [2.0, 2.0])
    (True, False)
    """
    try:
        return any(map(lt, values, lows)) or any(map(gt, values, highs))
    except TypeError:  # a value missing or not a number: read as its lower bound
        numbers = [v if v.__class__ in NUMBERS else lo for v, lo in zip(values, lows, strict=True)]
        return any(map(lt, numbers, lows)) or any(map(gt, numbers, highs))


class Watch:
    """The running statistics, a part of :class:`~stream_app.core.guard.NoiseGuard`."""

    if TYPE_CHECKING:
        settings: GuardSettings
        learned: int
        max_features: int

        def _twins_widen(self) -> None: ...

    def _start_watch(self) -> None:
        """Watch no feature yet."""
        self._slot: dict[str, int] = {}  # feature name -> its slot
        self._names: list[str] = []  # slot -> feature name
        self._count: list[float] = []
        self._mean: list[float] = []
        self._m2: list[float] = []
        self._lo: list[float] = []  # outlier bounds: -inf/inf while warming up or without spread
        self._hi: list[float] = []
        self._scale: list[float] = []  # 1/std, 0 without spread
        self._derived_for: tuple[float, int] | None = None  # (outlier_z, warmup) of the bounds
        self._warming = 0  # watched features whose count is below the warm-up

    def _slots_from(self, stats: dict[str, list[float]]) -> None:
        """Take the statistics of a guard stored before slots: ``{name: [count, mean, M2, ...]}``.

        Bounds and scales are derived again on the next review.
        """
        self._start_watch()
        for name, old in stats.items():
            self._slot[name] = len(self._names)
            self._names.append(name)
            self._count.append(old[0])
            self._mean.append(old[1])
            self._m2.append(old[2])
            self._lo.append(-math.inf)
            self._hi.append(math.inf)
            self._scale.append(0.0)

    def _rederive(self) -> None:
        """Derive every feature's bounds and scale anew (new settings, or an older guard)."""
        s = self.settings
        self._warming = 0
        for i in range(len(self._names)):
            self._derive(i, s.outlier_z, s.warmup)
        self._derived_for = (s.outlier_z, s.warmup)

    def _derive(self, i: int, outlier_z: float, warmup: int) -> None:
        """Set slot ``i``'s outlier bounds and 1/std from its running statistics."""
        count, mean = self._count[i], self._mean[i]
        std = math.sqrt(self._m2[i] / (count - 1)) if count > 1.0 else 0.0
        self._scale[i] = 1.0 / std if std > 0.0 else 0.0
        if count < warmup:
            self._warming += 1
        if count < warmup or not std > 0.0:
            self._lo[i], self._hi[i] = -math.inf, math.inf
        else:
            self._lo[i], self._hi[i] = mean - outlier_z * std, mean + outlier_z * std

    def _absorb_values(self, features: dict[str, Any], values: list[Any]) -> None:
        """Update the running statistics with an example that will be learned.

        ``values``: its watched values in slot order, as the review read them. A feature still
        warming up learns every example; after, one in ``stats_every``. New numeric names get a
        slot (up to ``max_features``); the names are looked at only when the example has more
        than the watched ones. Welford's update and what :meth:`_derive` derives are written out.
        """
        s = self.settings
        sampled = self.learned % s.stats_every == 0
        if sampled or self._warming:
            warmup, outlier_z, sqrt = s.warmup, s.outlier_z, math.sqrt
            counts, means, m2s = self._count, self._mean, self._m2
            for i, value in enumerate(values):
                count = counts[i]
                if value.__class__ not in NUMBERS or (not sampled and count >= warmup):
                    continue
                count += 1.0
                delta = value - means[i]
                mean = means[i] + delta / count
                m2 = m2s[i] + delta * (value - mean)
                counts[i], means[i], m2s[i] = count, mean, m2
                std = sqrt(m2 / (count - 1.0))
                self._scale[i] = 1.0 / std if std > 0.0 else 0.0
                if count < warmup or not std > 0.0:
                    self._lo[i], self._hi[i] = -math.inf, math.inf
                else:
                    self._lo[i], self._hi[i] = mean - outlier_z * std, mean + outlier_z * std
                if count - 1.0 < warmup <= count:  # its warm-up ends with this example
                    self._warming -= 1
        slot = self._slot
        if (
            len(slot) < self.max_features
            and (len(features) > len(slot) or None in values)  # else every name is watched
            and not features.keys() <= slot.keys()
        ):
            for name, value in features.items():
                if name not in slot and value.__class__ in NUMBERS:
                    self._watch(name, value)

    def _watch(self, name: str, value: float) -> None:
        """Give a new feature name a slot, unless the bound is reached."""
        if len(self._slot) >= self.max_features:  # past the bound, new names go unwatched
            return
        self._twins_widen()  # before the slot: the labels waiting for the twins were read without
        i = self._slot[name] = len(self._names)
        self._names.append(name)
        self._count.append(1.0)
        self._mean.append(float(value))
        self._m2.append(0.0)
        self._lo.append(-math.inf)
        self._hi.append(math.inf)
        self._scale.append(0.0)
        s = self.settings
        self._derive(i, s.outlier_z, s.warmup)
