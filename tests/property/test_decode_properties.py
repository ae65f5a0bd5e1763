"""Hypothesis: the decoder answers every input with an event or a known reason, never a crash."""

from __future__ import annotations

import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app import reasons
from stream_app.core.decode import decode_event
from stream_app.errors import RejectedMessage
from stream_app.settings import LimitSettings

LIMITS = LimitSettings()

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
feature_values = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=256)
)
events = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=128),
        "features": st.dictionaries(
            st.text(min_size=1, max_size=256), feature_values, min_size=1, max_size=30
        ),
    }
)


def answer(raw: bytes) -> str:
    try:
        decode_event(raw, LIMITS)
    except RejectedMessage as rejected:
        assert rejected.reason in reasons.ALL
        return rejected.reason
    return "ok"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(raw: bytes) -> None:
    answer(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_never_crashes(value: object) -> None:
    try:
        raw = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # ints beyond 64 bits: not sendable by orjson
        raw = repr(value).encode()
    answer(raw)


@settings(max_examples=300, deadline=None)
@given(events)
def test_valid_events_round_trip(event: dict[str, object]) -> None:
    raw = orjson.dumps(event)
    decoded = decode_event(raw, LIMITS)
    assert decoded.id == event["id"]
    assert decoded.features == event["features"]


@settings(max_examples=200, deadline=None)
@given(events, st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_values_from_python_json_are_named(event: dict[str, object], bad: float) -> None:
    import json

    event["features"] = {**event["features"], "bad": bad}  # type: ignore[dict-item]
    assert answer(json.dumps(event).encode()) in {reasons.NON_FINITE_FEATURE, reasons.OVERSIZED}


@settings(max_examples=200, deadline=None)
@given(events, st.integers(min_value=1, max_value=200))
def test_truncated_events_are_invalid_json(event: dict[str, object], cut: int) -> None:
    raw = orjson.dumps(event)
    truncated = raw[: max(len(raw) - cut, 1)]
    assert answer(truncated) in {reasons.INVALID_JSON, reasons.INVALID_UTF8, reasons.NOT_AN_OBJECT}
