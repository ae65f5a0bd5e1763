"""The decode/validate step: every dead-letter reason from a crafted payload; every valid shape."""

from __future__ import annotations

import orjson
import pytest

from stream_app import reasons
from stream_app.core.decode import NO_LABEL, FeatureEvent, decode_event
from stream_app.errors import RejectedMessage
from stream_app.settings import LimitSettings

LIMITS = LimitSettings(max_message_bytes=2048, max_features=5, max_id_chars=16, max_string_chars=8)


def good(**overrides: object) -> bytes:
    event: dict[str, object] = {"id": "e-1", "features": {"x": 1.5}}
    event.update(overrides)
    return orjson.dumps(event)


# One crafted payload per reason the decoder can give (the rest belong to later steps).
BAD = {
    reasons.INVALID_UTF8: b'{"id": "\xff\xfe", "features": {"x": 1}}',
    reasons.INVALID_JSON: b'{"id": "e-1", "features": ',
    reasons.NOT_AN_OBJECT: b'["e-1", {"x": 1}]',
    reasons.MISSING_ID: b'{"features": {"x": 1}}',
    reasons.INVALID_ID: good(id=17),
    reasons.MISSING_FEATURES: b'{"id": "e-1"}',
    reasons.INVALID_FEATURES: good(features=[1, 2]),
    reasons.NON_FINITE_FEATURE: b'{"id": "e-1", "features": {"x": NaN}}',
    reasons.TOO_MANY_FEATURES: good(features={f"f{i}": i for i in range(6)}),
    reasons.OVERSIZED: good(pad="x" * 3000),
    reasons.INVALID_TS: good(ts="yesterday"),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_each_bad_payload_gets_its_reason(reason: str) -> None:
    with pytest.raises(RejectedMessage) as caught:
        decode_event(BAD[reason], LIMITS)
    assert caught.value.reason == reason
    assert caught.value.detail  # a sentence a person can read


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, reasons.INVALID_JSON),
        (b"", reasons.INVALID_JSON),
        (b"null", reasons.NOT_AN_OBJECT),
        (b'"just a string"', reasons.NOT_AN_OBJECT),
        (b'{"id": null, "features": {"x": 1}}', reasons.MISSING_ID),
        (good(id=""), reasons.INVALID_ID),
        (good(id="x" * 17), reasons.INVALID_ID),
        (good(features=None), reasons.MISSING_FEATURES),
        (good(features={}), reasons.INVALID_FEATURES),
        (good(features={"x": None}), reasons.INVALID_FEATURES),
        (good(features={"x": [1]}), reasons.INVALID_FEATURES),
        (good(features={"x": {"y": 1}}), reasons.INVALID_FEATURES),
        (good(features={"x": "123456789"}), reasons.INVALID_FEATURES),
        (good(features={"": 1}), reasons.INVALID_FEATURES),
        (b'{"id": "e-1", "features": {"x": Infinity}}', reasons.NON_FINITE_FEATURE),
        (b'{"id": "e-1", "features": {"x": -Infinity}}', reasons.NON_FINITE_FEATURE),
        (b'{"id": "e-1", "features": {"x": 1e400}}', reasons.NON_FINITE_FEATURE),
        (b'{"id": "e-1", "features": {"x": 1' + b"0" * 400 + b"}}", reasons.NON_FINITE_FEATURE),
        (b'{"id": "\\ud800", "features": {"x": 1}}', reasons.INVALID_JSON),
        (b"[" * 5000 + b"]" * 5000, reasons.OVERSIZED),
        (good(ts=True), reasons.INVALID_TS),
        (b'{"id": "e-1", "features": {"x": 1}, "ts": NaN}', reasons.INVALID_TS),
    ],
)
def test_edge_cases(payload: bytes | None, reason: str) -> None:
    with pytest.raises(RejectedMessage) as caught:
        decode_event(payload, LIMITS)
    assert caught.value.reason == reason


def test_deep_nesting_within_size_is_invalid_json_not_a_crash() -> None:
    limits = LimitSettings(max_message_bytes=100_000)
    payload = b'{"id": "e", "features": {"x": 1}, "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(RejectedMessage) as caught:
        decode_event(payload, limits)
    assert caught.value.reason == reasons.INVALID_JSON


@pytest.mark.parametrize(
    "value", [0, -3, 2.5, -0.0, True, False, "red", "", "é✓", 9007199254740993]
)
def test_each_value_type_decodes(value: object) -> None:
    event = decode_event(good(features={"v": value}), LIMITS)
    assert event == FeatureEvent("e-1", {"v": value}, None, NO_LABEL)
    assert type(event.features["v"]) is type(value)


def test_optional_fields_and_unknown_fields() -> None:
    raw = good(ts=1763800000.123, label=1, source="app-7", nested={"ignored": [1, 2]})
    event = decode_event(raw, LIMITS)
    assert event.ts == 1763800000.123
    assert event.label == 1
    assert event.id == "e-1"


def test_absent_label_differs_from_null_label() -> None:
    assert decode_event(good(), LIMITS).label is NO_LABEL
    assert decode_event(good(label=None), LIMITS).label is None


def test_limits_are_inclusive() -> None:
    raw = good(id="x" * 16, features={f"f{i}": "y" * 8 for i in range(5)})
    assert len(decode_event(raw, LIMITS).features) == 5
    exact = b'{"id":"e","features":{"x":1},"p":"' + b"z" * 100 + b'"}'
    assert decode_event(exact, LimitSettings(max_message_bytes=len(exact))).id == "e"
    with pytest.raises(RejectedMessage, match="oversized"):
        decode_event(exact, LimitSettings(max_message_bytes=len(exact) - 1))


def test_a_name_valid_under_one_limit_is_checked_again_under_a_shorter_one() -> None:
    """Feature names checked once are remembered per limit: a shorter limit still refuses them."""
    long_name = {"long_name": 1.0}
    assert decode_event(good(features=long_name), LimitSettings()).features == long_name
    with pytest.raises(RejectedMessage) as caught:
        decode_event(good(features=long_name), LIMITS)
    assert caught.value.reason == reasons.INVALID_FEATURES


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        ({"x": 1.0, "y": 10**400}, reasons.NON_FINITE_FEATURE),
        ({"x": 10**400, "y": -(10**400)}, reasons.NON_FINITE_FEATURE),  # a sum of 0 is no proof
        ({"x": 1e308, "y": 1e308}, None),  # each finite: the sum's overflow is no fault
        ({"x": True, "y": 3}, None),
        ({"x": 1.0, "y": None}, reasons.INVALID_FEATURES),
        ({"x": 1.0, "": 2.0}, reasons.INVALID_FEATURES),
    ],
)
def test_numeric_features_are_checked_one_by_one(features: dict[str, object], reason: str) -> None:
    raw = b'{"id":"e","features":' + _plain_json(features) + b"}"
    if reason is None:
        assert decode_event(raw, LIMITS).features == features
        return
    with pytest.raises(RejectedMessage) as caught:
        decode_event(raw, LIMITS)
    assert caught.value.reason == reason


def _plain_json(features: dict[str, object]) -> bytes:
    """JSON of ``features`` with integers beyond 64 bits, which orjson does not write."""
    body = ",".join(f'"{k}":{"null" if v is None else str(v).lower()}' for k, v in features.items())
    return ("{" + body + "}").encode()
