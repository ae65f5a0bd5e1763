"""Encode and read the learning log: the examples the writer learned, a batch per message.

A restart, a rollback or a second worker replays the log after a version's ``learned_through``
offset (:mod:`stream_app.registry.replay`), so each entry holds an example exactly as it was
learned, with ``at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from stream_app.core.example import LabeledExample
from stream_app.core.messages import example_of

__all__ = [
    "LogBuffer",
    "decode_log_entries",
    "decode_log_entry",
    "encode_log_batch",
    "encode_log_entry",
    "join_log_entries",
]


def _log_fields(example: LabeledExample) -> dict[str, Any]:
    """Return one learning-log entry's fields: the example as served, and ``at``, when learned."""
    shadow = example.shadow
    return {
        "id": example.event_id,
        "features": example.features,
        "label": example.label,
        "served": list(example.served),
        "shadow": None if shadow is None else list(shadow),
        "at": example.at,
    }


def encode_log_entry(example: LabeledExample) -> bytes:
    """Encode one example the writer learned, as one learning-log message (the older shape).

    Writers now log a batch per message (:func:`encode_log_batch`); a log written before holds
    one of these per message, and :func:`decode_log_entries` reads both. A replay learns it
    again with ``at``, so that it learns it exactly as it was learned.

    >>> from stream_app.core.predict import Prediction
    >>> done = LabeledExample("e", {"x": 1.0}, 2.0, Prediction(1.5, {}), Prediction(2.5, {}), 5.0)
    >>> decode_log_entry(encode_log_entry(done)) == done
    True
    """
    return orjson.dumps(_log_fields(example))


def encode_log_batch(examples: Sequence[LabeledExample], max_bytes: int) -> list[bytes]:
    """Encode the examples a batch learned, in order, as few learning-log messages as fit.

    One message ``{"entries": [...]}`` holds them all, one entry per example, each entry the
    bytes of :func:`encode_log_entry` (see :class:`LogBuffer`). One message per batch instead of
    one per example is most of what logging costs.

    >>> from stream_app.core.predict import Prediction
    >>> done = [LabeledExample(f"e{i}", {"x": 1.0}, True, Prediction(1, {}), None, 5.0)
    ...         for i in range(4)]
    >>> [len(decode_log_entries(m)) for m in encode_log_batch(done, 1000)]
    [4]
    >>> [e for m in encode_log_batch(done, 1) for e in decode_log_entries(m)] == done
    True
    """
    buffer = LogBuffer(max_bytes)
    for example in examples:
        buffer.add(example)
    return buffer.take()


def join_log_entries(entries: Iterable[bytes], max_bytes: int) -> list[bytes]:
    """Join encoded entries, in order, into messages of at most ``max_bytes`` each.

    Each message holds as many entries as fit (an entry too large alone is a message anyway).

    >>> [m.decode() for m in join_log_entries([b'{"a":1}', b'{"b":2}', b'{"c":3}'], 30)]
    ['{"entries":[{"a":1},{"b":2}]}', '{"entries":[{"c":3}]}']
    >>> join_log_entries([], 30)
    []
    """
    messages: list[bytes] = []
    buffer = bytearray(_OPEN)
    for entry in entries:
        if len(buffer) + len(entry) + len(_CLOSE) + 1 > max_bytes and len(buffer) > _EMPTY:
            messages.append(bytes(buffer + _CLOSE))
            buffer = bytearray(_OPEN)
        if len(buffer) > _EMPTY:
            buffer += b","
        buffer += entry
    return messages if len(buffer) == _EMPTY else [*messages, bytes(buffer + _CLOSE)]


class LogBuffer:
    """The examples a batch learned, encoded as they come, taken as learning-log messages.

    :meth:`add` keeps each example; every :data:`CHUNK` of them are encoded at once (one
    ``orjson.dumps``) and let go, so that a batch's examples (their features, their answers) do
    not all stay alive until its end: on the bench path (features off, event mode, 2,000-event
    batches) that took about 1 us per labelled event off, min of 9 runs on the 2-core machine.
    :meth:`take` encodes the rest and joins the encoded pieces into messages of at most
    ``max_bytes``, as :func:`join_log_entries` joins :func:`encode_log_entry`'s entries: the same
    bytes.

    >>> from stream_app.core.predict import Prediction
    >>> buffer = LogBuffer(max_bytes=200)
    >>> for i in range(5):
    ...     buffer.add(LabeledExample(f"e{i}", {"x": 1.0}, 1, Prediction(1, {}), None, 5.0))
    >>> [len(decode_log_entries(message)) for message in buffer.take()], buffer.take()
    ([2, 2, 1], [])
    """

    __slots__ = ("_count", "_examples", "_pieces", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._examples: list[LabeledExample] = []
        self._pieces: list[bytes] = []
        """Encoded entries, comma-joined: each fits a message alone, or is a single entry."""
        self._count = 0
        """Examples in :attr:`_pieces`."""

    def __len__(self) -> int:
        return self._count + len(self._examples)

    def add(self, example: LabeledExample) -> None:
        """Keep ``example`` (learned, in this order) for the next message."""
        examples = self._examples
        examples.append(example)
        if len(examples) >= CHUNK:
            self._encode()

    def take(self) -> list[bytes]:
        """Return the messages of the examples added since the last call, in order (maybe none)."""
        if self._examples:
            self._encode()
        pieces, self._pieces, self._count = self._pieces, [], 0
        return join_log_entries(pieces, self.max_bytes)

    def _encode(self) -> None:
        """Encode the examples kept into one piece (or, too big for a message, one per entry)."""
        examples, self._examples = self._examples, []
        self._count += len(examples)
        joined = _encode_entries(examples)[1:-1]  # (the entries, without the array's brackets)
        if len(joined) + _FRAME <= self.max_bytes or len(examples) == 1:
            self._pieces.append(joined)
        else:  # entries this large are rare: each its own piece, joined as they fit
            self._pieces += [_encode_entries([example])[1:-1] for example in examples]


def _encode_entries(examples: Sequence[LabeledExample]) -> bytes:
    """Encode the learning-log entries of ``examples`` as one JSON array.

    The entries are :func:`_log_fields`' spelled out in one comprehension (no call per example;
    an answer as a plain tuple, which orjson writes as the same array as a list): this runs
    once per learned example.
    """
    return orjson.dumps(
        [
            {
                "id": event_id,
                "features": features,
                "label": label,
                "served": served[:],
                "shadow": None if shadow is None else shadow[:],
                "at": at,
            }
            for event_id, features, label, served, shadow, at in examples
        ]
    )


CHUNK: Final = 64
"""Examples :class:`LogBuffer` encodes at once: enough that one ``orjson.dumps`` serves many,
few enough that they are let go long before a 2,000-event batch ends."""


_OPEN = b'{"entries":['
_CLOSE = b"]}"
_EMPTY: Final = len(_OPEN)
_FRAME: Final = len(_OPEN) + len(_CLOSE)


def decode_log_entry(raw: bytes) -> LabeledExample:
    """Read a one-example learning-log message (:func:`encode_log_entry`).

    Raises ``orjson.JSONDecodeError``, ``KeyError``, ``TypeError`` or ``ValueError`` for what is
    not one.
    """
    entry = orjson.loads(raw)
    return example_of(entry, float(entry["at"]))


def decode_log_entries(raw: bytes) -> list[LabeledExample]:
    """Read a learning-log message of either shape: a batch's examples in order, or one example.

    Raises ``orjson.JSONDecodeError``, ``KeyError``, ``TypeError`` or ``ValueError`` for what is
    not one (a message is read whole or not at all: the writer wrote it whole).

    >>> one = b'{"id":"e","features":{},"label":1,"served":[1,{}],"shadow":null,"at":5.0}'
    >>> [e.event_id for e in decode_log_entries(one)]
    ['e']
    >>> decode_log_entries(b'{"entries":[' + one + b',' + one + b']}')[1].at
    5.0
    >>> decode_log_entries(b'[1]')
    Traceback (most recent call last):
        ...
    TypeError: a learning-log message is a JSON object, not list
    """
    fields = orjson.loads(raw)
    if not isinstance(fields, dict):
        raise TypeError(f"a learning-log message is a JSON object, not {type(fields).__name__}")
    if "entries" not in fields:  # written one example per message (before batches)
        return [example_of(fields, float(fields["at"]))]
    return [example_of(entry, float(entry["at"])) for entry in fields["entries"]]
