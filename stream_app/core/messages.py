"""Encode what the service writes: predictions, dead letters and model events, as JSON bytes.

The shapes are the contract (README.md, "Messages"); keep them here, in one place.

>>> encode_prediction("e-1", 1, {"0": 0.2, "1": 0.8}, "default", 3, 1763800000.125, 0.41)
b'{"id":"e-1","prediction":1,"proba":{"0":0.2,"1":0.8},"model":"default","model_version":3,"served_at":1763800000.125,"latency_ms":0.41}'
>>> letter = encode_dead_letter("invalid_json", "not JSON", "features", 0, 12, b"{")
>>> decode_dead_letter(letter)["payload"]
'ew=='
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from stream_app.core.example import LabeledExample
from stream_app.core.predict import Prediction

__all__ = [
    "LogBuffer",
    "decode_dead_letter",
    "decode_example",
    "decode_join",
    "decode_log_entries",
    "decode_log_entry",
    "encode_dead_letter",
    "encode_example",
    "encode_join_event",
    "encode_join_label",
    "encode_join_served",
    "encode_keyed_prediction",
    "encode_log_batch",
    "encode_log_entry",
    "encode_model_event",
    "encode_prediction",
    "join_log_entries",
]


def encode_prediction(
    event_id: str,
    prediction: Any,
    proba: dict[str, float],
    model: str,
    model_version: int,
    served_at: float,
    latency_ms: float,
) -> bytes:
    """Encode one prediction message (value of the ``predictions`` topic, key = event id)."""
    return orjson.dumps(
        {
            "id": event_id,
            "prediction": prediction,
            "proba": proba,
            "model": model,
            "model_version": model_version,
            "served_at": served_at,
            "latency_ms": latency_ms,
        }
    )


def encode_keyed_prediction(
    event_id: str,
    prediction: Any,
    proba: dict[str, float],
    model: str,
    model_version: int,
    served_at: float,
    latency_ms: float,
    model_key: str,
    fallback: bool,
) -> bytes:
    """Encode a keyed model's prediction: a prediction with ``model_key`` (and ``fallback``).

    ``model_version`` is the answering model's: the key's own, or the global model's when the
    fallback answered a young key (then ``"fallback": true``; the field is absent otherwise).

    >>> encode_keyed_prediction("e", None, {}, "default", 0, 1.0, 0.1, "u-1", True)
    b'{"id":"e","prediction":null,"proba":{},"model":"default","model_version":0,"served_at":1.0,"latency_ms":0.1,"model_key":"u-1","fallback":true}'
    """
    body = {
        "id": event_id,
        "prediction": prediction,
        "proba": proba,
        "model": model,
        "model_version": model_version,
        "served_at": served_at,
        "latency_ms": latency_ms,
        "model_key": model_key,
    }
    if fallback:
        body["fallback"] = True
    return orjson.dumps(body)


def encode_dead_letter(
    reason: str, detail: str, topic: str, partition: int, offset: int, payload: bytes | None
) -> bytes:
    """Encode a dead letter: why, where it came from, and the original value in base64."""
    return orjson.dumps(
        {
            "reason": reason,
            "detail": detail,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "payload": None if payload is None else base64.b64encode(payload).decode("ascii"),
        }
    )


def decode_dead_letter(raw: bytes) -> dict[str, Any]:
    """Read a dead letter back (for tools and tests); ``original`` holds the decoded payload bytes.

    >>> letter = encode_dead_letter("oversized", "big", "features", 1, 2, b"x")
    >>> decode_dead_letter(letter)["original"]
    b'x'
    """
    letter: dict[str, Any] = orjson.loads(raw)
    payload = letter.get("payload")
    letter["original"] = None if payload is None else base64.b64decode(payload)
    return letter


def encode_example(example: LabeledExample) -> bytes:
    """Encode a labeled example for the writer's examples topic: what was served, and the truth.

    The writer learns it at its own time, so ``at`` stays out (:func:`decode_example`).

    >>> sent = LabeledExample("e", {"x": 1.0}, True, Prediction(False, {"true": 0.4}), None, 5.0)
    >>> encode_example(sent)
    b'{"id":"e","features":{"x":1.0},"label":true,"served":[false,{"true":0.4}],"shadow":null}'
    >>> decode_example(encode_example(sent), at=7.0) == sent._replace(at=7.0)
    True
    """
    shadow = example.shadow
    return orjson.dumps(
        {
            "id": example.event_id,
            "features": example.features,
            "label": example.label,
            "served": list(example.served),
            "shadow": None if shadow is None else list(shadow),
        }
    )


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


def decode_example(raw: bytes, at: float) -> LabeledExample:
    """Read an example of the examples topic, to be learned at ``at`` (the writer's clock).

    Raises ``orjson.JSONDecodeError``, ``KeyError`` or ``TypeError`` for what is not one.
    """
    return _example_of(orjson.loads(raw), at)


def decode_log_entry(raw: bytes) -> LabeledExample:
    """Read a one-example learning-log message (:func:`encode_log_entry`).

    Raises ``orjson.JSONDecodeError``, ``KeyError``, ``TypeError`` or ``ValueError`` for what is
    not one.
    """
    entry = orjson.loads(raw)
    return _example_of(entry, float(entry["at"]))


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
        return [_example_of(fields, float(fields["at"]))]
    return [_example_of(entry, float(entry["at"])) for entry in fields["entries"]]


def _example_of(fields: Any, at: float) -> LabeledExample:
    """Build the example a decoded JSON object holds; ``KeyError`` or ``TypeError`` if none."""
    shadow = fields["shadow"]
    return LabeledExample(
        fields["id"],
        fields["features"],
        fields["label"],
        Prediction(*fields["served"]),
        Prediction(*shadow) if shadow else None,
        at,
    )


def encode_join_served(
    event_id: str,
    features: dict[str, Any],
    served: tuple[Any, dict[str, float]],
    shadow: tuple[Any, dict[str, float]] | None,
    model_version: int,
    served_at: float,
    model_key: str | None = None,
) -> bytes:
    """Encode a served event on its way to its home partition (internal join topic).

    A keyed model's event (answered over HTTP) names its ``model_key``: its label teaches that key.

    >>> served = encode_join_served("e", {"x": 1.0}, (True, {"true": 0.9}), None, 2, 5.0)
    >>> decode_join(served)["kind"], decode_join(served).get("model_key")
    ('served', None)
    """
    message = {
        "kind": "served",
        "id": event_id,
        "features": features,
        "served": list(served),
        "shadow": None if shadow is None else list(shadow),
        "model_version": model_version,
        "served_at": served_at,
    }
    if model_key is not None:
        message["model_key"] = model_key
    return orjson.dumps(message)


def encode_join_label(
    event_id: str, label: Any, topic: str, partition: int, offset: int, payload: bytes | None
) -> bytes:
    """Encode a label on its way to its id's home partition, with where it came from.

    >>> joined = decode_join(encode_join_label("e", 1, "labels", 2, 40, b'{"id":"e","label":1}'))
    >>> joined["source"], joined["original"]
    ({'topic': 'labels', 'partition': 2, 'offset': 40}, b'{"id":"e","label":1}')
    """
    return orjson.dumps(
        {
            "kind": "label",
            "id": event_id,
            "label": label,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "payload": None if payload is None else base64.b64encode(payload).decode("ascii"),
        }
    )


def encode_join_event(topic: str, partition: int, offset: int, payload: bytes | None) -> bytes:
    """Encode a keyed event on its way to its model key's home, to be answered there.

    >>> joined = decode_join(encode_join_event("features", 1, 7, b'{"id":"e"}'))
    >>> joined["kind"], joined["source"]["partition"], joined["original"]
    ('event', 1, b'{"id":"e"}')
    """
    return orjson.dumps(
        {
            "kind": "event",
            "id": "",
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "payload": None if payload is None else base64.b64encode(payload).decode("ascii"),
        }
    )


def decode_join(raw: bytes | None) -> dict[str, Any]:
    """Read a join-topic message (raises ``orjson.JSONDecodeError``, ``KeyError``, ``TypeError``).

    A label's or a keyed event's original bytes come back as ``original``.
    """
    message: dict[str, Any] = orjson.loads(raw or b"")
    kind = message["kind"]
    if kind == "label" or kind == "event":
        payload = message["payload"]
        message["original"] = None if payload is None else base64.b64decode(payload)
    elif kind != "served":
        raise KeyError(f"unknown join message kind {kind!r:.40}")
    return message


def encode_model_event(kind: str, model: str, model_version: int, **fields: Any) -> bytes:
    """Encode a ``model-events`` message: drift, promotion, checkpoint, rollback, pin, ...

    >>> encode_model_event("drift", "default", 2, examples_seen=10)
    b'{"type":"drift","model":"default","model_version":2,"examples_seen":10}'
    """
    return orjson.dumps({"type": kind, "model": model, "model_version": model_version, **fields})
