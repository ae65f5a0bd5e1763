"""Decode and validate a feature event from raw Kafka bytes: the first step of the serve path.

We read raw bytes and decode them here, never in a Faust serializer, so that a bad message becomes a
:class:`~stream_app.errors.RejectedMessage` with a reason code instead of a crashed agent.

>>> from stream_app.settings import LimitSettings
>>> event = decode_event(b'{"id": "e-1", "features": {"x": 0.5, "color": "red"}}', LimitSettings())
>>> event.id, event.features
('e-1', {'x': 0.5, 'color': 'red'})
>>> decode_event(b'{"id": "e-1", "features": {"x": NaN}}', LimitSettings())
Traceback (most recent call last):
...
stream_app.errors.RejectedMessage: non_finite_feature: feature 'x' is NaN or infinite
"""

from __future__ import annotations

import json
import math
import sys
from math import isfinite
from typing import Any, Final, NamedTuple

import orjson

from stream_app import reasons
from stream_app.errors import RejectedMessage
from stream_app.settings import LimitSettings

__all__ = [
    "NO_LABEL",
    "FeatureEvent",
    "Features",
    "check_id",
    "decode_event",
    "expect_object",
    "json_type",
    "parse_json",
    "validate_event",
]

Features = dict[str, float | int | bool | str]


class _NoLabel:
    """Marks an event that carries no ``label`` field (``None`` is a value a user could send)."""

    def __repr__(self) -> str:
        return "NO_LABEL"

    def __bool__(self) -> bool:
        return False


NO_LABEL: Final = _NoLabel()
_MISSING: Final = object()
_MAX_FLOAT: Final = sys.float_info.max


class FeatureEvent(NamedTuple):
    """A validated feature event: what the predict step receives."""

    id: str
    features: Features
    ts: float | None = None
    label: Any = NO_LABEL
    """The raw ``label`` value if the event carried one (validated later, by the label step)."""
    key: str | None = None
    """The model key (``model.key_field``'s value), set by the keyed path's decoding
    (:func:`stream_app.core.keyed_path.decode_keyed_event`); None without keyed models."""


_new_event = tuple.__new__
"""Builds a :class:`FeatureEvent` from all its fields in one C call, on the hot path: a
``NamedTuple``'s own constructor is a Python function (its defaults), about 0.15 us more."""
assert FeatureEvent._fields == ("id", "features", "ts", "label", "key")  # (the order it is given)


def decode_event(raw: bytes | None, limits: LimitSettings) -> FeatureEvent:
    """Turn a message value into a :class:`FeatureEvent`, or raise ``RejectedMessage``.

    >>> decode_event(b'[1, 2]', LimitSettings())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: not_an_object: the message is a JSON array; ...
    """
    obj = parse_json(raw, limits)
    if type(obj) is not dict:
        expect_object(obj)  # (raises, naming what came)
    return validate_event(obj, limits)


def expect_object(obj: Any) -> dict[str, Any]:
    """Return a parsed message if it is a JSON object, else raise ``not_an_object``.

    >>> expect_object("hi")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: not_an_object: the message is a JSON string; ...
    """
    if type(obj) is not dict:
        raise RejectedMessage(
            reasons.NOT_AN_OBJECT, f"the message is a JSON {json_type(obj)}; expected an object"
        )
    return obj


def parse_json(raw: bytes | None, limits: LimitSettings) -> Any:
    r"""Parse a message value as JSON within the size limit, naming what is wrong if it is not.

    orjson refuses ``NaN``, ``Infinity`` and out-of-range numbers, which Python's own ``json.dumps``
    writes; we re-read those with the standard library (off the hot path) so validation can answer
    ``non_finite_feature`` instead of a vaguer ``invalid_json``.

    >>> parse_json(b'{"a": Infinity}', LimitSettings())
    {'a': inf}
    >>> parse_json(b'\xff', LimitSettings())
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: invalid_utf8: byte 0 is not valid UTF-8
    """
    if raw is None or len(raw) == 0:
        raise RejectedMessage(reasons.INVALID_JSON, "the message has no value")
    if len(raw) > limits.max_message_bytes:
        raise RejectedMessage(
            reasons.OVERSIZED,
            f"the message is {len(raw)} bytes; the limit is {limits.max_message_bytes}",
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as fast_error:
        return _parse_lenient(raw, str(fast_error))


def _parse_lenient(raw: bytes, fast_error: str) -> Any:
    """Second chance for what orjson refuses: the standard library's more permissive parser."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedMessage(
            reasons.INVALID_UTF8, f"byte {exc.start} is not valid UTF-8"
        ) from None
    try:
        obj = json.loads(text)
        # Unpaired surrogates (from \ud800 escapes) parse but could never be written back out.
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        raise RejectedMessage(reasons.INVALID_JSON, f"not valid JSON: {fast_error}") from None
    return obj


def validate_event(obj: dict[str, Any], limits: LimitSettings) -> FeatureEvent:
    """Check a parsed JSON object against the feature-event contract and build the event.

    Unknown top-level fields are ignored, so producers can add their own.

    >>> validate_event({"id": "a", "features": {}}, LimitSettings())
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: invalid_features: features is empty; send at least one
    """
    event_id = obj.get("id")
    if type(event_id) is not str or not 0 < len(event_id) <= limits.max_id_chars:
        event_id = check_id(obj, limits)  # (raises, naming what is wrong)
    features: Any = obj.get("features")
    if type(features) is not dict or not 0 < len(features) <= limits.max_features:
        _check_shape(features, limits)  # (raises)
    if not _plainly_numeric(features, limits.max_string_chars):
        _check_features(features, limits.max_string_chars)
    ts = obj.get("ts")
    if ts is not None and (
        type(ts) not in (int, float) or not math.isfinite(ts) or abs(ts) > _MAX_FLOAT
    ):
        raise RejectedMessage(
            reasons.INVALID_TS, f"ts must be a finite number of epoch seconds, got {ts!r:.40}"
        )
    return _new_event(FeatureEvent, (event_id, features, ts, obj.get("label", NO_LABEL), None))


def _check_shape(features: Any, limits: LimitSettings) -> None:
    """Raise ``RejectedMessage`` for ``features`` that is no object of 1 to ``max_features``."""
    if features is None:
        raise RejectedMessage(reasons.MISSING_FEATURES, "the event has no features")
    if type(features) is not dict:
        raise RejectedMessage(
            reasons.INVALID_FEATURES,
            f"features is a JSON {json_type(features)}; expected an object",
        )
    if not features:
        raise RejectedMessage(reasons.INVALID_FEATURES, "features is empty; send at least one")
    if len(features) > limits.max_features:
        raise RejectedMessage(
            reasons.TOO_MANY_FEATURES,
            f"{len(features)} features; the limit is {limits.max_features}",
        )


def check_id(obj: dict[str, Any], limits: LimitSettings) -> str:
    """Return the message's ``id`` if it is a string of 1 to ``max_id_chars`` characters.

    >>> check_id({"id": ""}, LimitSettings())
    Traceback (most recent call last):
    ...
    stream_app.errors.RejectedMessage: invalid_id: id has 0 characters; expected 1 to 128
    """
    event_id = obj.get("id", _MISSING)
    if event_id is _MISSING or event_id is None:
        raise RejectedMessage(reasons.MISSING_ID, "the message has no id")
    if type(event_id) is not str:
        raise RejectedMessage(
            reasons.INVALID_ID, f"id is a JSON {json_type(event_id)}; expected a string"
        )
    if not 0 < len(event_id) <= limits.max_id_chars:
        raise RejectedMessage(
            reasons.INVALID_ID,
            f"id has {len(event_id)} characters; expected 1 to {limits.max_id_chars}",
        )
    return event_id


_KNOWN_NAMES_MAX: Final = 4096
"""Most feature names :func:`_plainly_numeric` remembers as valid, per name-length limit (it
forgets them all past this, so names that never repeat cannot grow it without bound)."""
_known_names: dict[int, set[str]] = {}
"""Feature names seen valid (1 to ``max_chars`` characters), by ``max_chars``: most streams
send the same few names in every event, so checking them again is a set lookup each."""


def _plainly_numeric(features: dict[str, Any], max_chars: int) -> bool:
    """Tell, at C speed, that every value is a finite number or boolean and every name fits.

    The common case on the hot path; anything else (strings, a value beyond a double's range,
    a sum that overflows) gets the exact check, which names the offending feature.
    A float sum (``sum`` from ``0.0``) takes only numbers (and booleans), turns each into a
    double as it adds it (refusing an integer beyond a double's range: an integer sum would let
    ``10**400 - 10**400`` through) and comes out non-finite, or raises, if any value is NaN or
    infinite: one pass in C checks every value, about twice as fast as ``math.fsum`` (whose
    exactness this does not need: a finite sum that overflows only sends the event to the exact
    check). A name is checked once, then remembered.

    >>> _plainly_numeric({"a": 1.5, "b": 2, "c": True}, 256), _plainly_numeric({"a": "x"}, 256)
    (True, False)
    >>> _plainly_numeric({"a": float("nan")}, 256), _plainly_numeric({"a": 10**400}, 256)
    (False, False)
    >>> _plainly_numeric({"a": 10**400, "b": -(10**400)}, 256), _plainly_numeric({"": 1}, 256)
    (False, False)
    >>> _plainly_numeric({"b": 2, "a": 10**400}, 256), _plainly_numeric({"a": None}, 256)
    (False, False)
    >>> _plainly_numeric({"a": 1e308, "b": 1e308}, 256)  # (finite: the exact check passes it)
    False
    """
    try:
        if not isfinite(sum(features.values(), 0.0)):
            return False
    except (TypeError, OverflowError):  # not a number; an integer beyond a double
        return False
    known = _known_names.get(max_chars)
    if known is not None and known.issuperset(features):
        return True
    if "" in features or max(map(len, features)) > max_chars:
        return False
    if known is None or len(known) + len(features) > _KNOWN_NAMES_MAX:
        known = _known_names[max_chars] = set()
    known.update(features)
    return True


def _check_features(features: dict[str, Any], max_chars: int) -> None:
    """Raise ``RejectedMessage`` for the first feature name or value that breaks the contract."""
    for name, value in features.items():
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise RejectedMessage(
                    reasons.NON_FINITE_FEATURE, f"feature {name!r:.60} is NaN or infinite"
                )
        elif kind is int:
            if not -_MAX_FLOAT <= value <= _MAX_FLOAT:
                raise RejectedMessage(
                    reasons.NON_FINITE_FEATURE, f"feature {name!r:.60} is beyond a double's range"
                )
        elif kind is str:
            if len(value) > max_chars:
                raise RejectedMessage(
                    reasons.INVALID_FEATURES,
                    f"feature {name!r:.60} is a string of {len(value)} characters; "
                    f"the limit is {max_chars}",
                )
        elif kind is not bool:
            raise RejectedMessage(
                reasons.INVALID_FEATURES,
                f"feature {name!r:.60} is a JSON {json_type(value)}; "
                "expected a number, boolean or string",
            )
        if not 0 < len(name) <= max_chars:
            raise RejectedMessage(
                reasons.INVALID_FEATURES,
                f"a feature name has {len(name)} characters; expected 1 to {max_chars}",
            )


def json_type(value: Any) -> str:
    """Name a parsed value's JSON type, for error details a person reads.

    >>> json_type([]), json_type(None), json_type(True), json_type(1.5)
    ('array', 'null', 'boolean', 'number')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
