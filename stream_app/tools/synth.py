"""The demo's stream: River's SEA features with a known concept change, noise and late labels.

Before ``demo.change_at`` an event is positive when ``x1 + x2 > 8`` (River's SEA, variant 0);
from there on the concept reverses (positive when ``x1 + x2 <= 8``), and the two take turns
every ``demo.change_every`` events. A share of labels is flipped, a share arrives later on the
labels topic instead of inline, and a share of extra messages is malformed (features) or labels
an event that never was (labels), so that every part of the service shows itself. All of it is
drawn from one seeded generator.

With ``keys`` (``stream-app demo --keys N``) each event also names its model key in the field
:data:`KEY_FIELD` (``user-0`` .. ``user-<N-1>``, drawn uniformly), and each key has a concept of
its own: key *k* is SEA's variant ``k % 4`` (positive when ``x1 + x2`` exceeds 8, 9, 7 or 9.5).
Only the first ``demo.drifting_keys`` keys change concept, each once, reversed after
``demo.key_change_at`` events of its own (past ``drift.warmup``, so that the key's own drift monitor
may tell); the others keep theirs, so the drift is theirs alone. Events and their labels are keyed
by the model key (the co-partitioning rule of keyed models), and a late label carries the key.

>>> from stream_app.tools.settings import DemoSettings
>>> stream = DemoStream(DemoSettings(bad_share=0.0, delayed_share=0.0))
>>> first = next(iter(stream))
>>> first.topic, first.key, sorted(orjson.loads(first.value)["features"])
('features', b'ev-0', ['channel', 'x1', 'x2', 'x3'])
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

import orjson

from stream_app.tools.settings import DemoSettings

__all__ = ["BAD_MESSAGES", "KEY_FIELD", "DemoMessage", "DemoStream", "concept", "key_concept"]

BAD_MESSAGES: Final = (
    b'{"id": "broken", "features": {"x1": 1.0',
    b'["not", "an", "object"]',
    b'{"features": {"x1": 1.0}}',
    b'{"id": "nan", "features": {"x1": NaN}}',
    b'{"id": "nested", "features": {"x1": {"deep": 1}}}',
    b"\xff\xfe not utf-8",
)
_CHANNELS: Final = ("web", "app", "store")
KEY_FIELD: Final = "user"
"""The event field that names the model key in the keyed demo stream."""
SEA_THRESHOLDS: Final = (8.0, 9.0, 7.0, 9.5)
"""SEA's four concepts (Street and Kim, 2001): positive when ``x1 + x2`` exceeds the threshold."""


class DemoMessage(NamedTuple):
    """One message of the stream: which topic (``features`` or ``labels``), key and value."""

    topic: str
    key: bytes | None
    value: bytes
    event: int
    """Number of the feature event it belongs to; -1 for a malformed extra message."""
    labelled: bool = False
    """True for a label message and for an event with its label inline."""
    change: bool = False
    """True for the first event of a new concept (of its key, in the keyed stream)."""


def concept(event: int, settings: DemoSettings) -> int:
    """Tell which concept labels event number ``event``: 0 (x1 + x2 > 8) or 1 (reversed).

    >>> s = DemoSettings(change_at=10, change_every=5)
    >>> [concept(i, s) for i in (0, 9, 10, 14, 15, 20)]
    [0, 0, 1, 1, 0, 1]
    """
    if event < settings.change_at:
        return 0
    if settings.change_every <= 0:
        return 1
    return 1 - ((event - settings.change_at) // settings.change_every) % 2


def key_concept(key: int, nth: int, settings: DemoSettings) -> int:
    """Tell which concept labels the ``nth`` event (from 0) of key number ``key``.

    Only the first ``drifting_keys`` keys change, once, at their ``key_change_at``-th event.

    >>> s = DemoSettings(key_change_at=10, drifting_keys=2)
    >>> [key_concept(k, 10, s) for k in range(4)], key_concept(0, 9, s)
    ([1, 1, 0, 0], 0)
    """
    return int(key < settings.drifting_keys and nth >= settings.key_change_at)


def sea_label(x: dict[str, float], key: int, reversed_: int) -> bool:
    """Label SEA features for key number ``key``: its variant's threshold, reversed or not.

    >>> sea_label({"x1": 4.0, "x2": 4.5}, 0, 0), sea_label({"x1": 4.0, "x2": 4.5}, 1, 0)
    (True, False)
    >>> sea_label({"x1": 4.0, "x2": 4.5}, 0, 1)
    False
    """
    above = x["x1"] + x["x2"] > SEA_THRESHOLDS[key % len(SEA_THRESHOLDS)]
    return above != bool(reversed_)


class DemoStream:
    """Iterate the messages; :meth:`late_labels` then gives the delayed labels still owed."""

    def __init__(self, settings: DemoSettings, keys: int = 0) -> None:
        self.settings = settings
        self.keys = keys
        """Number of model keys (0: one global model, no key field)."""
        self._delayed: deque[tuple[int, str, bool, str | None]] = deque()
        """(event number it is due at, event id, label, model key), in due order."""

    def __iter__(self) -> Iterator[DemoMessage]:
        from river.datasets import synth

        s = self.settings
        rng = random.Random(s.seed)  # noqa: S311 - a seeded demo stream, not a secret
        seen = [0] * self.keys  # events of each key so far
        for i, (x, y) in enumerate(synth.SEA(variant=0, seed=s.seed)):
            while self._delayed and self._delayed[0][0] <= i:
                _, event_id, label, key = self._delayed[0]
                yield self._label(event_id, label, i, key)
                self._delayed.popleft()  # (after the yield: a caller that stops still owes it)
            if rng.random() < s.bad_share:
                yield DemoMessage("features", None, rng.choice(BAD_MESSAGES), -1)
            if rng.random() < s.bad_share:
                yield self._label(f"ghost-{i}", True, -1, None)
            features: dict[str, Any] = {f"x{k + 1}": float(v) for k, v in x.items()}
            event: dict[str, Any] = {"id": f"ev-{i}", "features": features, "ts": time.time()}
            key = None
            if self.keys:
                number = rng.randrange(self.keys)
                key = event[KEY_FIELD] = f"user-{number}"
                nth, seen[number] = seen[number], seen[number] + 1
                now = key_concept(number, nth, s)
                change = nth > 0 and now != key_concept(number, nth - 1, s)
                y = sea_label(features, number, now)
            else:
                change = i > 0 and concept(i, s) != concept(i - 1, s)
                if concept(i, s) == 1:
                    y = not y
            label = bool(y) != (rng.random() < s.flip_share)
            features["channel"] = rng.choice(_CHANNELS)
            late = rng.random() < s.delayed_share
            if not late:
                event["label"] = label
            kafka_key = (key or event["id"]).encode()
            yield DemoMessage("features", kafka_key, orjson.dumps(event), i, not late, change)
            if late:  # (after the yield: an event the caller did not send is owed no label)
                self._delayed.append((i + s.label_delay, event["id"], label, key))

    def late_labels(self) -> Iterator[DemoMessage]:
        """Yield the delayed labels not sent yet (at the end of a run)."""
        while self._delayed:
            due, event_id, label, key = self._delayed.popleft()
            yield self._label(event_id, label, due, key)

    @staticmethod
    def _label(event_id: str, label: bool, event: int, key: str | None) -> DemoMessage:
        """Make a label message; a keyed one names its model key and is keyed by it."""
        body: dict[str, Any] = {"id": event_id, "label": label}
        if key is not None:
            body[KEY_FIELD] = key
        return DemoMessage("labels", (key or event_id).encode(), orjson.dumps(body), event, True)
