"""The witness of the noise guard: what the model would be had it learned every label since a copy.

The guard's twins (:mod:`stream_app.core.twins`) decide when the held-out labels were right; the
witness then gives the model that unguarded state, rebuilt from a copy of its estimator and the
examples recorded since. It is not stored in checkpoints: a restored learner starts a new one.
"""

from __future__ import annotations

import copy
from typing import Any

from stream_app.core import fused

__all__ = ["Example", "Witness"]

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
    ...     if witness.record({}, y):  # due: a span recorded since the newer copy
    ...         witness.turn(model, model.n, pending=None)
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

    def record(self, features: dict[str, Any], y: Any) -> bool:
        """Remember a label the witness learns (every label but a held-out outlier).

        Returns :attr:`due`, asked after every label: one call for both.
        """
        since = self._since_newer
        since[0].append(features)
        since[1].append(y)
        return len(since[0]) >= self.span

    def turn(self, estimator: Any, learned: int, pending: list[Example] | None) -> None:
        """Copy the model's estimator now; forget what came before the older copy.

        ``pending`` are examples the model accepted but has not learned yet (batch mode's
        ``learn_many``): the copy learns them, as the model is about to.
        """
        copied = copy.deepcopy(estimator)
        for features, y in pending or ():
            fused.learn_one(copied, features, y)
        self._older, self._since_older = self._newer, self._since_newer
        self._newer, self._since_newer = (copied, learned), ([], [])

    def rebuild(self) -> tuple[Any, list[Example]]:
        """Return a copy of the older copy that learned every example since, and those examples."""
        estimator = copy.deepcopy(self._older[0])
        older, newer = self._since_older, self._since_newer
        replayed = [*zip(older[0], older[1], strict=True), *zip(newer[0], newer[1], strict=True)]
        for features, y in replayed:
            fused.learn_one(estimator, features, y)
        return estimator, replayed
