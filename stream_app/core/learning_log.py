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
    bytes of :func:`encode_log_entry` (see :func:`join_log_entries`). One message per batch
    instead of one per example is most of what logging costs.

    >>> from stream_app.core.predict import Prediction
    >>> done = [LabeledExample(f"e{i}", {"x": 1.0}, True, Prediction(1, {}), None, 5.0)
    ...         for i in range(4)]
    >>> [len(decode_log_entries(m)) for m in encode_log_batch(done, 1000)]
    [4]
    >>> [e for m in encode_log_batch(done, 1) for e in decode_log_entries(m)] == done
    True
    """
    return join_log_entries([encode_log_entry(example) for example in examples], max_bytes)


def join_log_entries(entries: Iterable[bytes], max_bytes: int) -> list[bytes]:
    """Join encoded entries, in order, into messages of at most ``max_bytes`` each.

    Each message holds as many entries as fit (an entry too large alone is a message anyway).

    >>> [m.decode() for m in join_log_entries([b'{"a":1}', b'{"b":2}', b'{"c":3}'], 30)]
    ['{"entries":[{"a":1},{"b":2}]}', '{"entries":[{"c":3}]}']
    >>> join_log_entries([], 30)
    []
    """
    buffer, messages = LogBuffer(max_bytes), []
    for entry in entries:
        full = buffer.add(entry)
        if full is not None:
            messages.append(full)
    last = buffer.take()
    return messages if last is None else [*messages, last]


class LogBuffer:
    """Learning-log entries joined as bytes as they come, one message of them at a time.

    One growing buffer: the path keeps no object per learned example until its batch ends.

    >>> buffer = LogBuffer(max_bytes=30)
    >>> buffer.add(b'{"a":1}'), buffer.add(b'{"b":2}')
    (None, None)
    >>> buffer.add(b'{"c":3}')  # it would not fit: the full message comes back
    b'{"entries":[{"a":1},{"b":2}]}'
    >>> buffer.take(), buffer.take()
    (b'{"entries":[{"c":3}]}', None)
    """

    __slots__ = ("_buffer", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray(_OPEN)

    def add(self, entry: bytes) -> bytes | None:
        """Add an entry; return the message of the entries before it if it did not fit."""
        buffer, full = self._buffer, None
        if len(buffer) + len(entry) + len(_CLOSE) + 1 > self.max_bytes and len(buffer) > _EMPTY:
            full = self.take()
            buffer = self._buffer
        if len(buffer) > _EMPTY:
            buffer += b","
        buffer += entry
        return full

    def take(self) -> bytes | None:
        """Return the message of the entries added since the last one, or None if none were."""
        buffer = self._buffer
        if len(buffer) == _EMPTY:
            return None
        buffer += _CLOSE
        self._buffer = bytearray(_OPEN)
        return bytes(buffer)


_OPEN = b'{"entries":['
_CLOSE = b"]}"
_EMPTY: Final = len(_OPEN)


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
