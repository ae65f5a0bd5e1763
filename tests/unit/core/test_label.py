"""The label step: decoding delayed labels, validating labels, and mapping classes."""

from __future__ import annotations

import math

import pytest

from stream_app import reasons
from stream_app.core.label import LabelCodec, LabelEvent, check_label, decode_label
from stream_app.errors import RejectedMessage
from stream_app.settings import LimitSettings

LIMITS = LimitSettings()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"id": "e", "label": 1', reasons.INVALID_JSON),
        (b"[1]", reasons.NOT_AN_OBJECT),
        (b'{"label": 1}', reasons.MISSING_ID),
        (b'{"id": 3, "label": 1}', reasons.INVALID_ID),
        (b'{"id": "e"}', reasons.INVALID_LABEL),
        (b"\xff", reasons.INVALID_UTF8),
    ],
)
def test_bad_label_messages(raw: bytes, reason: str) -> None:
    with pytest.raises(RejectedMessage) as caught:
        decode_label(raw, LIMITS)
    assert caught.value.reason == reason


def test_good_label_message() -> None:
    assert decode_label(b'{"id": "e-9", "label": null, "extra": 1}', LIMITS) == LabelEvent(
        "e-9", None
    )


@pytest.mark.parametrize("label", ["spam", 0, 7, True, False])
def test_classification_labels_accepted(label: object) -> None:
    assert check_label(label, "classification", (), 256) == label


@pytest.mark.parametrize("label", [None, 1.5, [1], {"a": 1}, "", "x" * 257])
def test_classification_labels_refused(label: object) -> None:
    with pytest.raises(RejectedMessage) as caught:
        check_label(label, "classification", (), 256)
    assert caught.value.reason == reasons.INVALID_LABEL


def test_declared_classes_are_strict_about_type() -> None:
    assert check_label(1, "classification", (0, 1), 256) == 1
    for label in (True, "1", 2):
        with pytest.raises(RejectedMessage) as caught:
            check_label(label, "classification", (0, 1), 256)
        assert caught.value.reason == reasons.UNKNOWN_LABEL


@pytest.mark.parametrize("label", [None, True, "3.5", math.nan, math.inf, 1e308 * 10, [1.0]])
def test_regression_labels_refused(label: object) -> None:
    with pytest.raises(RejectedMessage) as caught:
        check_label(label, "regression", (), 256)
    assert caught.value.reason == reasons.INVALID_LABEL


def test_regression_labels_become_floats() -> None:
    assert check_label(3, "regression", (), 256) == 3.0
    assert type(check_label(3, "regression", (), 256)) is float


@pytest.mark.parametrize(
    ("stream", "negative", "positive"),
    [
        ([1, 0, 1], 0, 1),  # 0/1: by truthiness, whatever comes first
        ([True, False], False, True),
        (["spam", "ham"], "spam", "ham"),  # strings: the first seen is negative
    ],
)
def test_binary_codec(stream: list[object], negative: object, positive: object) -> None:
    codec = LabelCodec("classification", binary=True, declared=())
    for label in stream:
        assert codec.to_model(label) is (label == positive and type(label) is type(positive))
    assert codec.from_model(False) == negative and codec.from_model(True) == positive


def test_binary_codec_with_declared_classes_and_a_third_class() -> None:
    codec = LabelCodec("classification", binary=True, declared=("ham", "spam"))
    assert codec.to_model("spam") is True
    assert codec.from_model(False) == "ham"
    with pytest.raises(RejectedMessage) as caught:
        codec.to_model("eggs")
    assert caught.value.reason == reasons.UNKNOWN_LABEL


def test_binary_codec_before_the_second_class() -> None:
    codec = LabelCodec("classification", binary=True, declared=())
    codec.to_model("a")
    assert codec.from_model(True) is None  # no positive class seen yet


def test_multiclass_codec_is_identity() -> None:
    codec = LabelCodec("classification", binary=False, declared=())
    assert [codec.to_model(c) for c in ("a", "b", "c")] == ["a", "b", "c"]
    assert codec.classes == ["a", "b", "c"] and codec.from_model("b") == "b"
