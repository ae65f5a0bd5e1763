"""The join step: keep what was served until its delayed label arrives; hold an early label.

A label that comes before its event waits until the event is served. Both are kept at the id's
home partition (see :mod:`stream_app.core.route`), so each worker keeps the events and labels of the
home partitions it serves. The stores are bounded twice: entries older than ``ttl_s`` expire,
and past ``max_items`` the oldest go first. The pending store holds what the service *answered*
(prediction and probabilities, and the challenger's shadow answer), so quality and the noise guard
judge the answer that was given.

>>> store = PendingStore(ttl_s=60.0, max_items=2)
>>> store.put(0, "a", Served({"x": 1.0}, True, {"true": 0.9}, None, 0, served_at=100.0))
>>> store.take(0, "a", now=130.0).features
{'x': 1.0}
>>> store.take(0, "a", now=130.0) is None  # taken already
True
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple

from stream_app.core.decode import Features
from stream_app.core.example import LabeledExample
from stream_app.core.predict import Prediction

__all__ = ["EarlyLabel", "EarlyLabels", "PendingStore", "RecentIds", "Served", "Source"]


class Served(NamedTuple):
    """What the service answered for one event, kept until its label arrives."""

    features: Features
    prediction: Any
    proba: dict[str, float]
    shadow: Prediction | None
    """The challenger's answer in shadow, if one was running."""
    model_version: int
    served_at: float
    """Epoch seconds; the TTL counts from here."""
    rerouted: bool = False
    """It reached its home through the join topic (served on another partition, or over HTTP)."""
    model_key: str | None = None
    """A keyed event's model key (``model.key_field``): its label teaches that key's learner."""

    def labeled(self, event_id: str, label: Any, at: float) -> LabeledExample:
        """Return the example this served event makes with its label, to be learned at ``at``.

        >>> kept = Served({"x": 1.0}, True, {"true": 0.9}, None, 0, served_at=100.0)
        >>> kept.labeled("a", False, at=130.0).served
        Prediction(prediction=True, proba={'true': 0.9})
        """
        answer = Prediction(self.prediction, self.proba)
        return LabeledExample(event_id, self.features, label, answer, self.shadow, at)


class Source(NamedTuple):
    """Where a label came from: enough of its record to dead-letter it later (a ``Record``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class EarlyLabel(NamedTuple):
    """A label whose event was not served yet, held at its home partition until it is."""

    label: Any
    source: Source
    rerouted: bool
    """It reached its home through the join topic."""
    arrived_at: float
    """Epoch seconds; the early-label TTL counts from here."""


class EarlyLabels:
    """Labels waiting for their events, by home partition and id, bounded by age and count.

    :meth:`put`, :meth:`expire` and :meth:`drop_partition` return what they let go, so that the
    caller can dead-letter it: a label is never dropped silently.

    >>> early = EarlyLabels(ttl_s=10.0, max_items=1)
    >>> src = Source("labels", 0, 5, b"a", b"{}")
    >>> early.put(0, "a", EarlyLabel(True, src, False, arrived_at=0.0))
    []
    >>> [eid for eid, _ in early.put(0, "b", EarlyLabel(False, src, False, arrived_at=1.0))]
    ['a']
    >>> early.take(0, "b").label, early.take(0, "b")
    (False, None)
    """

    def __init__(self, ttl_s: float, max_items: int) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._parts: dict[int, OrderedDict[str, EarlyLabel]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: object) -> bool:
        """``(partition, id) in early``: whether a label for that id waits there."""
        if not isinstance(key, tuple):
            return False
        part = self._parts.get(key[0])
        return part is not None and key[1] in part

    def put(self, partition: int, event_id: str, early: EarlyLabel) -> list[tuple[str, EarlyLabel]]:
        """Hold ``early``; return the oldest labels pushed out past ``max_items``."""
        part = self._parts.setdefault(partition, OrderedDict())
        if event_id not in part:
            self._size += 1
        part[event_id] = early
        evicted: list[tuple[str, EarlyLabel]] = []
        while self._size > self.max_items:
            oldest = min(
                (p for p in self._parts.values() if p),
                key=lambda p: next(iter(p.values())).arrived_at,
            )
            evicted.append(oldest.popitem(last=False))
            self._size -= 1
        return evicted

    def take(self, partition: int, event_id: str) -> EarlyLabel | None:
        """Remove and return the label held for ``event_id``, or ``None``."""
        part = self._parts.get(partition)
        early = None if part is None else part.pop(event_id, None)
        if early is not None:
            self._size -= 1
        return early

    def expire(self, now: float) -> dict[int, list[tuple[str, EarlyLabel]]]:
        """Remove and return, by home partition, every label that waited longer than the TTL."""
        horizon = now - self.ttl_s
        expired: dict[int, list[tuple[str, EarlyLabel]]] = {}
        for partition, part in self._parts.items():
            while part and next(iter(part.values())).arrived_at < horizon:
                expired.setdefault(partition, []).append(part.popitem(last=False))
                self._size -= 1
        return expired

    def drop_partition(self, partition: int) -> int:
        """Forget a home partition this worker no longer serves (its new owner rebuilds it)."""
        part = self._parts.pop(partition, None)
        if part is None:
            return 0
        self._size -= len(part)
        return len(part)


class RecentIds:
    """Ids seen lately: forgotten after ``ttl_s`` or beyond ``max_items``, the oldest first.

    Remembers which labels were taken (by the join) or learned (by the learner), so that a
    second label for the same event is refused, with memory bounded like the pending store's.

    >>> ids = RecentIds(ttl_s=10.0, max_items=2)
    >>> ids.add("a", now=0.0); ids.add("b", now=1.0); ids.add("c", now=2.0)
    >>> "a" in ids, "c" in ids, len(ids)
    (False, True, 2)
    >>> ids.add("d", now=11.5); "b" in ids
    False
    """

    _first = -math.inf
    """When the oldest id remembered was seen (or -inf: not known): while the TTL's horizon is
    before it and the count is within bound, :meth:`add` has nothing to forget and looks no
    further. (A class default: an instance pickled before it existed checks at its first add.)"""

    def __init__(self, ttl_s: float, max_items: int) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, event_id: str, now: float) -> None:
        """Remember ``event_id`` as seen at ``now``; forget what is too old or too many."""
        seen = self._seen
        if event_id in seen:  # (rare: it may have been the oldest; look at the new oldest)
            seen.move_to_end(event_id)
            self._first = -math.inf
        seen[event_id] = now
        horizon = now - self.ttl_s
        if self._first < horizon:
            self._forget(now)
        elif len(seen) > self.max_items:  # full (each add once it is): the oldest goes
            seen.popitem(last=False)
            first = next(iter(seen.values()), -math.inf)
            if first < horizon or len(seen) > self.max_items:  # (rare: more to forget)
                self._forget(now)
            else:
                self._first = first

    def _forget(self, now: float) -> None:
        """Forget the oldest ids while too many are kept or the oldest is older than the TTL."""
        seen, horizon = self._seen, now - self.ttl_s
        while seen and (len(seen) > self.max_items or next(iter(seen.values())) < horizon):
            seen.popitem(last=False)
        self._first = next(iter(seen.values())) if seen else -math.inf


class PendingStore:
    """Served events by partition and id, bounded by age and count."""

    def __init__(self, ttl_s: float, max_items: int) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._parts: dict[int, OrderedDict[str, Served]] = {}
        self._size = 0
        self.expired = 0
        """Entries dropped by age or count without their label (for metrics)."""

    def __len__(self) -> int:
        return self._size

    def put(self, partition: int, event_id: str, served: Served) -> None:
        """Remember ``served`` for ``event_id``; a re-served id keeps only its latest answer."""
        part = self._parts.setdefault(partition, OrderedDict())
        if event_id in part:
            del part[event_id]
            self._size -= 1
        part[event_id] = served
        self._size += 1
        if self._size > self.max_items:
            self._evict_oldest()

    def take(self, partition: int, event_id: str, now: float) -> Served | None:
        """Remove and return the entry for ``event_id``, or ``None`` if unknown or expired.

        >>> store = PendingStore(ttl_s=10.0, max_items=5)
        >>> store.put(1, "old", Served({"x": 1}, None, {}, None, 0, served_at=0.0))
        >>> store.take(1, "old", now=11.0) is None
        True
        """
        part = self._parts.get(partition)
        if part is None:
            return None
        served = part.pop(event_id, None)
        if served is None:
            return None
        self._size -= 1
        if now - served.served_at > self.ttl_s:
            self.expired += 1
            return None
        return served

    def expire(self, now: float) -> int:
        """Drop every entry older than the TTL; return how many were dropped."""
        dropped = 0
        horizon = now - self.ttl_s
        for part in self._parts.values():
            while part:
                first = next(iter(part.values()))
                if first.served_at >= horizon:
                    break
                part.popitem(last=False)
                dropped += 1
        self._size -= dropped
        self.expired += dropped
        return dropped

    def drop_partition(self, partition: int) -> int:
        """Forget a partition this worker no longer serves; return how many entries went."""
        part = self._parts.pop(partition, None)
        if part is None:
            return 0
        self._size -= len(part)
        return len(part)

    def _evict_oldest(self) -> None:
        """Drop the oldest entry across partitions (the store is full)."""
        oldest = min(
            (p for p in self._parts.values() if p),
            key=lambda p: next(iter(p.values())).served_at,
        )
        oldest.popitem(last=False)
        self._size -= 1
        self.expired += 1
