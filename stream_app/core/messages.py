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
from typing import Any

import orjson

from stream_app.core.example import LabeledExample
from stream_app.core.predict import Prediction

__all__ = [
    "decode_dead_letter",
    "decode_example",
    "decode_join",
    "encode_dead_letter",
    "encode_example",
    "encode_join_event",
    "encode_join_label",
    "encode_join_served",
    "encode_keyed_prediction",
    "encode_model_event",
    "encode_prediction",
    "example_of",
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


def decode_example(raw: bytes, at: float) -> LabeledExample:
    """Read an example of the examples topic, to be learned at ``at`` (the writer's clock).

    Raises ``orjson.JSONDecodeError``, ``KeyError`` or ``TypeError`` for what is not one.
    """
    return example_of(orjson.loads(raw), at)


def example_of(fields: Any, at: float) -> LabeledExample:
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
