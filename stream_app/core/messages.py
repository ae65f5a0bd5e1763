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

__all__ = [
    "decode_dead_letter",
    "decode_example",
    "decode_join",
    "encode_dead_letter",
    "encode_example",
    "encode_join_label",
    "encode_join_served",
    "encode_model_event",
    "encode_prediction",
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


def encode_example(
    event_id: str,
    features: dict[str, Any],
    label: Any,
    served: tuple[Any, dict[str, float]],
    shadow: tuple[Any, dict[str, float]] | None,
    at: float | None = None,
) -> bytes:
    """Encode a labeled example: what was served and what the truth was.

    For the writer's examples topic, and with ``at`` (when the writer learned it) for the
    learning log, so that a replay learns it exactly as it was learned.

    >>> decode_example(encode_example("e", {"x": 1.0}, True, (False, {"true": 0.4}), None))["label"]
    True
    """
    example = {
        "id": event_id,
        "features": features,
        "label": label,
        "served": list(served),
        "shadow": None if shadow is None else list(shadow),
    }
    if at is not None:
        example["at"] = at
    return orjson.dumps(example)


def decode_example(raw: bytes) -> dict[str, Any]:
    """Read an example written by :func:`encode_example` (raises ``orjson.JSONDecodeError``)."""
    example: dict[str, Any] = orjson.loads(raw)
    return example


def encode_join_served(
    event_id: str,
    features: dict[str, Any],
    served: tuple[Any, dict[str, float]],
    shadow: tuple[Any, dict[str, float]] | None,
    model_version: int,
    served_at: float,
) -> bytes:
    """Encode a served event on its way to its id's home partition (internal join topic).

    >>> served = encode_join_served("e", {"x": 1.0}, (True, {"true": 0.9}), None, 2, 5.0)
    >>> decode_join(served)["kind"]
    'served'
    """
    return orjson.dumps(
        {
            "kind": "served",
            "id": event_id,
            "features": features,
            "served": list(served),
            "shadow": None if shadow is None else list(shadow),
            "model_version": model_version,
            "served_at": served_at,
        }
    )


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


def decode_join(raw: bytes | None) -> dict[str, Any]:
    """Read a join-topic message (raises ``orjson.JSONDecodeError``, ``KeyError``, ``TypeError``).

    A label's original bytes come back as ``original``.
    """
    message: dict[str, Any] = orjson.loads(raw or b"")
    kind = message["kind"]
    if kind == "label":
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
