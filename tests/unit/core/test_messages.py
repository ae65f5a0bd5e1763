"""Output message shapes are the contract: pin them."""

from __future__ import annotations

import orjson

from stream_app.core.messages import (
    decode_dead_letter,
    encode_dead_letter,
    encode_model_event,
    encode_prediction,
)


def test_prediction_shape() -> None:
    msg = orjson.loads(
        encode_prediction("e-1", True, {"false": 0.1, "true": 0.9}, "m", 2, 1.5, 0.2)
    )
    assert list(msg) == [
        "id", "prediction", "proba", "model", "model_version", "served_at", "latency_ms",
    ]  # fmt: skip
    assert msg["prediction"] is True and msg["proba"]["true"] == 0.9


def test_dead_letter_carries_reason_source_and_original_bytes() -> None:
    payload = b"\xff\x00 not json"
    letter = decode_dead_letter(
        encode_dead_letter("invalid_utf8", "bad", "features", 3, 42, payload)
    )
    assert letter["reason"] == "invalid_utf8"
    assert letter["detail"] == "bad"
    assert letter["source"] == {"topic": "features", "partition": 3, "offset": 42}
    assert letter["original"] == payload


def test_dead_letter_of_a_tombstone() -> None:
    letter = decode_dead_letter(encode_dead_letter("invalid_json", "empty", "features", 0, 1, None))
    assert letter["payload"] is None and letter["original"] is None


def test_model_event_shape() -> None:
    msg = orjson.loads(encode_model_event("drift", "default", 4, examples_seen=9, detector="ADWIN"))
    assert msg == {
        "type": "drift", "model": "default", "model_version": 4, "examples_seen": 9,
        "detector": "ADWIN",
    }  # fmt: skip
