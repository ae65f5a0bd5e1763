"""The canary step: a new version answers a deterministic share of events, stepping up as it holds.

A canary is the learner's challenger that also *answers* a share of the events: those whose id
hashes below the share (:func:`bucket`, the same on every worker and every run). The incumbent
answers the rest. Both keep learning every label, as a challenger in shadow does, so the canary's
quality on its own share and the incumbent's on the other share are judged over the same time:

- once both rolling windows hold ``rollout.window`` labels, the canary steps up to the next of
  ``rollout.steps`` if its quality is not worse than the incumbent's by more than
  ``rollout.max_regression`` (accuracy points, or MAE), and the windows start again;
- if it is worse by more, it is rolled back: the incumbent answers everything again;
- after the step to a share of 1.0 it is done: it serves, as a promotion does.

A canary that raises is rolled back at once, and the incumbent's answer is served instead.
Without labels nothing is judged: the canary keeps its share and :attr:`Canary.waiting` says why.

>>> from stream_app.core.quality import Quality
>>> canary = Canary(0.05, (0.05, 0.25, 0.5, 1.0), Quality("classification", 2),
...     Quality("classification", 2), max_regression=0.0)
>>> canary.waiting
'no labels yet on the canary share (0 of 2)'
>>> [canary.judge(on_canary, 0.0) for on_canary in (True, False, True, False)]
[None, None, None, 'step']
>>> canary.advance()
>>> canary.share, canary.waiting
(0.25, 'no labels yet on the canary share (0 of 2)')
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from stream_app.core.quality import Quality

__all__ = [
    "ABORTED",
    "CANARY_DONE",
    "CANARY_ROLLBACK",
    "CANARY_STEP",
    "DONE",
    "REGRESSED",
    "ROLLBACK",
    "STEP",
    "Canary",
    "bucket",
    "next_share",
]

CANARY_STEP: Final = "canary_step"
"""Model-event type: the canary's share went up (or a canary started)."""
CANARY_ROLLBACK: Final = "canary_rollback"
"""Model-event type: the canary was rolled back; the incumbent answers everything."""
CANARY_DONE: Final = "canary_done"
"""Model-event type: the canary reached a share of 1.0 and serves."""

STEP: Final = "step"
ROLLBACK: Final = "rollback"
DONE: Final = "done"
"""What one judgement decided (:meth:`Canary.judge`)."""

REGRESSED: Final = "quality_regression"
"""Rollback reason: worse than the incumbent by more than ``rollout.max_regression``."""
ABORTED: Final = "abort"
"""Rollback reason: an operator's ``models canary --abort``."""

_HASH_BYTES: Final = 8
_HASH_SPAN: Final = float(1 << (8 * _HASH_BYTES))


def bucket(key: str) -> float:
    """Place an event id (or a model key) in [0, 1), the same on every worker and run.

    >>> bucket("e-1") == bucket("e-1"), 0.0 <= bucket("e-1") < 1.0
    (True, True)
    """
    digest = hashlib.blake2b(key.encode(), digest_size=_HASH_BYTES).digest()
    return int.from_bytes(digest, "big") / _HASH_SPAN


def next_share(steps: Sequence[float], share: float) -> float:
    """Return the first step above ``share`` (1.0 past the last).

    >>> next_share((0.05, 0.25, 0.5, 1.0), 0.05), next_share((0.05, 0.25), 0.3)
    (0.25, 1.0)
    """
    return next((step for step in steps if step > share), 1.0)


class Canary:
    """The rollout state of one canary: its share and the two rolling windows it is judged on."""

    def __init__(
        self,
        share: float,
        steps: Sequence[float],
        canary_quality: Quality,
        incumbent_quality: Quality,
        max_regression: float,
    ) -> None:
        self.share = share
        self.steps = tuple(steps)
        self.canary_quality = canary_quality
        """The canary's quality on the events it answered."""
        self.incumbent_quality = incumbent_quality
        """The incumbent's quality on the events it answered."""
        self.max_regression = max_regression

    def takes(self, event_id: str) -> bool:
        """Tell whether the canary answers this event (its id hashes below the share)."""
        return bucket(event_id) < self.share

    def judge(self, on_canary: bool, error: float | None) -> str | None:
        """Score one label's answer on its share; say whether to step, finish or roll back.

        ``error`` is the error of the model that answered (``None``: it had no answer). Returns
        :data:`STEP`, :data:`DONE` or :data:`ROLLBACK` once both windows are full, else None;
        the caller takes a step with :meth:`advance`.
        """
        if error is not None:
            (self.canary_quality if on_canary else self.incumbent_quality).add(error)
        if not (self.canary_quality.full and self.incumbent_quality.full):
            return None
        if self.regressed:
            return ROLLBACK
        return DONE if next_share(self.steps, self.share) >= 1.0 else STEP

    def advance(self) -> None:
        """Take the step a judgement allowed: the next share, judged on fresh labels."""
        self.share = next_share(self.steps, self.share)
        self.canary_quality.clear()
        self.incumbent_quality.clear()

    @property
    def regressed(self) -> bool:
        """True if the canary is worse than the incumbent by more than ``max_regression``."""
        mine, theirs = self.canary_quality.value, self.incumbent_quality.value
        if mine is None or theirs is None:
            return False
        if self.canary_quality.metric == "accuracy":
            return mine < theirs - self.max_regression
        return mine > theirs + self.max_regression

    @property
    def waiting(self) -> str | None:
        """Why no step can be taken yet (labels missing on a share), or None once judged."""
        shares = (("canary", self.canary_quality), ("incumbent", self.incumbent_quality))
        for name, quality in shares:
            if not quality.full:
                wanted = quality.window
                if not len(quality):
                    return f"no labels yet on the {name} share (0 of {wanted})"
                return f"waiting for labels on the {name} share ({len(quality)} of {wanted})"
        return None

    def fields(self) -> dict[str, Any]:
        """Give the share and both qualities, for ``model-events`` and the live view."""
        metric = self.canary_quality.metric
        return {
            "share": self.share,
            f"{metric}_canary": self.canary_quality.value,
            f"{metric}_incumbent": self.incumbent_quality.value,
            "labels_canary": len(self.canary_quality),
            "labels_incumbent": len(self.incumbent_quality),
            "max_regression": self.max_regression,
        }
