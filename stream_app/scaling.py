"""Standardise numeric features and leave strings for the one-hot step after it.

River's ``StandardScaler`` placed after a one-hot step sees each indicator only when it is present,
always as 1.0: its variance is 0 and the scaler turns it into 0.0, so a string feature carries no
signal to the linear model behind it. :class:`ScaleNumbers` goes before the one-hot step instead,
scales the numbers exactly as ``StandardScaler`` does and passes strings through unchanged. Its
state is bounded like :class:`stream_app.models.BoundedOneHot`'s: the first ``max_names`` numeric
names are scaled; a name first seen after that passes as it comes (the one-hot step then hashes
it into a bucket), so a stream whose feature names churn cannot grow it without end.

It keeps one slot per name (count, mean, variance, standard deviation) and does the Welford update
and the scaling itself, with the very floating-point operations of ``StandardScaler``, in order:
the answers are the same to the bit, for a fraction of the cost (one dictionary lookup per name
instead of six, no intermediate dictionary, the square root taken once per update instead of once
per transform). Versions stored when it wrapped a ``StandardScaler`` load into slots
(:meth:`ScaleNumbers.__setstate__`).

This module imports River and the standard library only: pickled models that use it load without
any Kafka code.

>>> step = ScaleNumbers()
>>> for x in ({"x": 1.0, "color": "red"}, {"x": 3.0, "color": "blue"}):
...     step.learn_one(x)
>>> step.transform_one({"x": 3.0, "color": "red"})
{'x': 1.0, 'color': 'red'}
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Final

from river import base, preprocessing

__all__ = ["DEFAULT_MAX_NAMES", "ScaleNumbers"]

DEFAULT_MAX_NAMES: Final = 2**16
"""Numeric names scaled by a step built without a bound (``model.max_indicators`` sets it)."""

_COUNT, _MEAN, _VAR, _STD = 0, 1, 2, 3
"""Places in a name's slot: examples counted, running mean, running variance, its square root."""


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
        self._slots: dict[Hashable, list[Any]] = {}
        """Per scaled name: [count, mean, variance, standard deviation], in order first seen."""
        self._learned: tuple[dict[Hashable, Any], dict[Hashable, Any]] | None = None
        """The last example learned and its standardised numbers, for the ``transform_one`` of
        that very dictionary which River's pipeline calls right after ``learn_one`` (taken once)."""

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the last example learned: a transient of one ``learn_one``."""
        state = self.__dict__.copy()
        state["_learned"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also a step stored when it kept River's ``StandardScaler`` (``scaler``)."""
        scaler = state.pop("scaler", None)
        if scaler is not None:
            state["_slots"] = _slots_of(scaler)
        state.setdefault("_learned", None)  # (stored before it existed)
        self.__dict__.update(state)

    @property
    def names(self) -> int:
        """How many numeric names are scaled (at most ``max_names``)."""
        return len(self._slots)

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        """Update the running mean and variance of each scaled number in ``x``.

        The operations are ``StandardScaler.learn_one``'s, in its order (Welford's update).
        River's pipeline asks :meth:`transform_one` of the same ``x`` right after: when every
        value of ``x`` is a scaled number, its answer is computed here, from the same floats
        (``value - mean`` is a term of the update), and handed over once, to the next call only,
        if it is for that very dictionary (the object, not an equal one). A caller that changes
        ``x`` in place between the two calls must pass a copy (River's pipeline calls the two
        in a row).

        >>> step, x = ScaleNumbers(), {"x": 3.0}
        >>> step.learn_one({"x": 1.0}); step.learn_one(x)
        >>> step.transform_one(x), step.transform_one(x)  # handed over, then computed: the same
        ({'x': 1.0}, {'x': 1.0})
        """
        slots = self._slots
        out: dict[Hashable, Any] | None = {}
        for name, value in x.items():
            if value.__class__ is str:
                out = None
                continue
            slot = slots.get(name)
            if slot is None:
                if len(slots) >= self.max_names:
                    out = None
                    continue
                slot = slots[name] = [0, 0.0, 0.0, 0.0]
            count = slot[_COUNT] + 1
            old_mean = slot[_MEAN]
            step = value - old_mean  # (StandardScaler computes it twice: the same float)
            mean = old_mean + step / count
            var = slot[_VAR]
            centred = value - mean
            var += (step * centred - var) / count
            slot[_COUNT] = count
            slot[_MEAN] = mean
            slot[_VAR] = var
            std = slot[_STD] = var**0.5
            if out is not None:  # transform_one's own operations, on the updated slot
                out[name] = centred / std if var else 0.0
        self._learned = None if out is None else (x, out)

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        """Return ``x`` with its scaled numbers standardised; strings and the rest unchanged.

        A scaled name gives ``(value - mean) / std``, or 0.0 while its variance is 0, as
        ``StandardScaler`` does. An admitted name not learned yet gives 0.0 too, without touching
        the state: predictions alone never grow it.
        """
        learned = self._learned
        if learned is not None:
            self._learned = None
            if learned[0] is x:  # right after learn_one(x): its answer (see learn_one)
                return learned[1]
        if x.keys() <= self._slots.keys():  # known names only: the common case
            out = self._transform_known(x)
            if out is not None:
                return out
        return self._transform_mixed(x)

    def _transform_known(self, x: dict[Hashable, Any]) -> dict[Hashable, Any] | None:
        """:meth:`transform_one` of an ``x`` whose names are all scaled; None if one is a string.

        A string under a scaled name passes through unscaled: :meth:`_transform_mixed` does that.
        """
        slots = self._slots
        out: dict[Hashable, Any] = {}
        try:
            for name, value in x.items():
                slot = slots[name]
                out[name] = (value - slot[_MEAN]) / slot[_STD] if slot[_VAR] else 0.0
        except TypeError:  # (value - mean) of a string: the caller takes the mixed path
            return None
        return out

    def _transform_mixed(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        """:meth:`transform_one` of an ``x`` with strings or names not scaled yet."""
        slots = self._slots
        room = self.max_names - len(slots)
        out: dict[Hashable, Any] = {}
        for name, value in x.items():
            slot = None if value.__class__ is str else slots.get(name)
            if slot is not None:
                out[name] = (value - slot[_MEAN]) / slot[_STD] if slot[_VAR] else 0.0
            elif value.__class__ is not str and room > 0:
                out[name] = 0.0  # admitted, not learned yet
                room -= 1
            else:
                out[name] = value
        return out

    def statistics(self, names: Sequence[Hashable]) -> tuple[Any, Any, Any]:
        """Return NumPy arrays of the scaled ``names``' means, divisors and zero-variance mask.

        Batch answers (:mod:`stream_app.core.linear_batch`) standardise a matrix with them:
        ``(value - mean) / std`` where the variance is not 0, and 0.0 where it is (the divisor is
        1.0 there, so that no division by zero happens). Every name must be scaled.

        >>> step = ScaleNumbers()
        >>> for x in ({"x": 1.0, "c": 2.0}, {"x": 3.0, "c": 2.0}):
        ...     step.learn_one(x)
        >>> step.statistics(["x", "c"])
        (array([2., 2.]), array([1., 1.]), array([False,  True]))
        """
        import numpy as np  # only batch answers need arrays

        picked = [self._slots[name] for name in names]
        means = np.array([slot[_MEAN] for slot in picked], dtype=np.float64)
        constant = np.array([not slot[_VAR] for slot in picked], dtype=bool)
        stds = np.array([slot[_STD] or 1.0 for slot in picked], dtype=np.float64)
        stds[constant] = 1.0
        return means, stds, constant

    def learn_many(self, X: Any) -> None:
        """Learn a numeric frame's columns (batch mode sends only numeric features).

        ``StandardScaler.learn_many`` merges the batch's statistics into the running ones.
        """
        scaler = self._scaler()
        scaler.learn_many(X)
        self._slots = _slots_of(scaler)

    def transform_many(self, X: Any) -> Any:
        """Standardise a numeric frame's columns, as ``StandardScaler.transform_many`` does."""
        return self._scaler().transform_many(X)

    def _scaler(self) -> Any:
        """Return a River ``StandardScaler`` holding this step's statistics (for batch methods)."""
        scaler = preprocessing.StandardScaler()
        for name, slot in self._slots.items():
            scaler.counts[name] = slot[_COUNT]
            scaler.means[name] = slot[_MEAN]
            scaler.vars[name] = slot[_VAR]
        return scaler


def _slots_of(scaler: Any) -> dict[Hashable, list[Any]]:
    """Return slots holding a River ``StandardScaler``'s statistics, for the names it counted."""
    means, variances = scaler.means, scaler.vars
    return {
        name: [count, means[name], variances[name], variances[name] ** 0.5]
        for name, count in scaler.counts.items()
    }
