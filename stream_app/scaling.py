"""Standardise numeric features and leave strings for the one-hot step after it.

River's ``StandardScaler`` placed after a one-hot step sees each indicator only when it is present,
always as 1.0: its variance is 0 and the scaler turns it into 0.0, so a string feature carries no
signal to the linear model behind it. :class:`ScaleNumbers` goes before the one-hot step instead,
scales the numbers exactly as ``StandardScaler`` does and passes strings through unchanged. Its
state is bounded like :class:`stream_app.models.BoundedOneHot`'s: the first ``max_names`` numeric
names are scaled; a name first seen after that passes as it comes (the one-hot step then hashes
it into a bucket), so a stream whose feature names churn cannot grow it without end.

This module imports River and the standard library only: pickled models that use it load without
any Kafka code.

>>> step = ScaleNumbers()
>>> for x in ({"x": 1.0, "color": "red"}, {"x": 3.0, "color": "blue"}):
...     step.learn_one(x)
>>> step.transform_one({"x": 3.0, "color": "red"})
{'x': 1.0, 'color': 'red'}
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

from river import base, preprocessing

__all__ = ["DEFAULT_MAX_NAMES", "ScaleNumbers"]

DEFAULT_MAX_NAMES: Final = 2**16
"""Numeric names scaled by a step built without a bound (``model.max_indicators`` sets it)."""


class ScaleNumbers(base.Transformer):
    """Standardise numbers as River's ``StandardScaler`` does; strings pass through.

    Parameters
    ----------
    max_names
        Numeric names scaled (first seen, first kept); later ones pass through unscaled.

    >>> ScaleNumbers().transform_one({"x": 2.0, "color": "red"})
    {'x': 0.0, 'color': 'red'}
    """

    def __init__(self, max_names: int = DEFAULT_MAX_NAMES) -> None:
        self.max_names = max_names
        self.scaler: Any = preprocessing.StandardScaler()  # River is untyped

    def _numbers(self, x: dict[Hashable, Any]) -> dict[Hashable, Any] | None:
        """Return the part of ``x`` the scaler takes, or None if that is all of ``x`` (no copy)."""
        counts = self.scaler.counts
        for name, value in x.items():
            if value.__class__ is str or name not in counts:
                break
        else:
            return None  # known numbers only: the common case
        room = self.max_names - len(counts)
        numbers: dict[Hashable, Any] = {}
        for name, value in x.items():
            if value.__class__ is str:
                continue
            if name in counts:
                numbers[name] = value
            elif room > 0:
                numbers[name] = value
                room -= 1
        return numbers

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        """Update the running mean and variance of each scaled number in ``x``."""
        numbers = self._numbers(x)
        self.scaler.learn_one(x if numbers is None else numbers)

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        """Return ``x`` with its scaled numbers standardised; strings and the rest unchanged.

        An admitted name not learned yet gives 0.0, as ``StandardScaler`` gives (its variance is
        0), without touching the scaler's state: predictions alone never grow it.
        """
        numbers = self._numbers(x)
        if numbers is None:
            return self.scaler.transform_one(x)  # type: ignore[no-any-return]
        counts = self.scaler.counts
        scaled = self.scaler.transform_one({k: v for k, v in numbers.items() if k in counts})
        out: dict[Hashable, Any] = {}
        for name, value in x.items():
            if name in scaled:
                out[name] = scaled[name]
            elif name in numbers:
                out[name] = 0.0
            else:
                out[name] = value
        return out

    def learn_many(self, X: Any) -> None:
        """Learn a numeric frame's columns (batch mode sends only numeric features)."""
        self.scaler.learn_many(X)

    def transform_many(self, X: Any) -> Any:
        """Standardise a numeric frame's columns."""
        return self.scaler.transform_many(X)
