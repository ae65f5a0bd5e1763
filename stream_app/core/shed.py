"""The shed step: how far behind the single writer is, and which late examples it still learns.

One global model has one writer; every follower forwards its labeled examples to it through the
examples topic, so the labels a whole group can learn per second are capped by one process. The
writer measures its lag as the age of the forwarded examples it reaches (their Kafka timestamps:
a restarted writer recomputes it from the topic, it is not kept anywhere). With
``learn.max_lag_s`` set and exceeded, it learns a uniform random sample of the backlog, of the
share that takes ``max_lag_s`` seconds to learn at its measured cost per example: the writer is
back within bound once through it, whatever the followers offer. Which examples are kept is
decided by a hash of the event id, so the sample is uniform, independent of the labels, and the
same if the backlog is read again.

>>> shedder = Shedder(max_lag_s=2.0)
>>> shedder.observe(seconds=0.5, learned=1000)  # it learns 2,000 examples per second
>>> shedder.share(lag_s=1.5, backlog=40_000), shedder.share(lag_s=8.0, backlog=40_000)
(1.0, 0.1)
>>> kept = sum(shedder.keep(f"e-{i}", 0.25) for i in range(10_000))
>>> 2_300 < kept < 2_700
True
>>> Shedder(max_lag_s=0.0).share(lag_s=3600.0, backlog=10**6)  # no bound: learn all, however late
1.0
"""

from __future__ import annotations

import zlib
from typing import Any, Final

__all__ = ["Shedder"]

_HASH_SPACE: Final = 2**32
"""crc32 values are uniform over [0, 2**32): a hash below share * this is kept."""
COST_SMOOTHING: Final = 0.2
"""Weight of the newest batch in the running cost per learned example (an exponential mean)."""


class Shedder:
    """Decide the share of a late backlog to learn, and when to announce it."""

    def __init__(self, max_lag_s: float) -> None:
        self.max_lag_s = max_lag_s
        self.shedding = False
        """True while the last batch was sampled (a ``shedding`` event announced it)."""
        self._announced_at = float("-inf")
        self._shed_since = 0
        """Examples skipped since the last announcement."""
        self.cost_s = 0.0
        """Seconds the writer takes per learned example, a running mean (0 = not measured)."""

    def observe(self, seconds: float, learned: int) -> None:
        """Fold a batch's time into the running cost per learned example."""
        if learned <= 0:
            return
        cost = seconds / learned
        self.cost_s = (
            cost if not self.cost_s else self.cost_s + COST_SMOOTHING * (cost - self.cost_s)
        )

    def share(self, lag_s: float, backlog: int) -> float:
        """Return the share of a backlog this late to learn.

        All of it within bound; past it, the share of its ``backlog`` examples the writer learns
        in ``max_lag_s`` seconds at its measured cost per example.
        """
        if self.max_lag_s <= 0.0 or lag_s <= self.max_lag_s or backlog <= 0 or not self.cost_s:
            return 1.0
        return min(1.0, self.max_lag_s / (backlog * self.cost_s))

    @staticmethod
    def keep(event_id: str, share: float) -> bool:
        """Tell whether the example of ``event_id`` is in the uniform sample of ``share``."""
        return zlib.crc32(event_id.encode()) < share * _HASH_SPACE

    def note(self, now: float, share: float, lag_s: float, shed: int) -> dict[str, Any] | None:
        """Record a batch's outcome; return the fields of a ``shedding`` event to announce, if due.

        Shedding is announced when it starts, then at most once per ``max_lag_s`` seconds while
        it goes on (with the count skipped since the last announcement), and once when it stops
        (share 1.0): never silently, never one message per batch.
        """
        self._shed_since += shed
        sampling = share < 1.0
        started_or_stopped = sampling != self.shedding
        self.shedding = sampling
        if not started_or_stopped and not (sampling and now - self._announced_at >= self.max_lag_s):
            return None
        self._announced_at = now
        fields = {
            "share": round(share, 4),
            "lag_s": round(lag_s, 3),
            "max_lag_s": self.max_lag_s,
            "shed": self._shed_since,
        }
        self._shed_since = 0
        return fields
