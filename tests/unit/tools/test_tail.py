"""Readable lines for ``stream-app tail``: every topic, and messages that do not fit."""

from __future__ import annotations

import pytest

from stream_app.core.messages import encode_dead_letter, encode_model_event, encode_prediction
from stream_app.errors import StreamAppError
from stream_app.settings import Settings
from stream_app.tools.tail import TOPICS, describe, topic_name


def test_every_contract_name_maps_to_the_configured_topic() -> None:
    settings = Settings().replace(topics={"predictions_shadow": "t-shadow"})
    assert {name: topic_name(settings, name) for name in TOPICS}["predictions-shadow"] == "t-shadow"
    with pytest.raises(StreamAppError):
        topic_name(settings, "nope")


def test_prediction_dead_letter_and_model_event_lines() -> None:
    prediction = encode_prediction("e-7", "spam", {"ham": 0.3, "spam": 0.7}, "m", 4, 1.0, 2.5)
    assert describe("predictions", prediction) == "e-7  -> 'spam'  p=0.700  m v4  2.50 ms"
    letter = encode_dead_letter("oversized", "too big", "features", 1, 99, b"\xff" * 3)
    line = describe("dead-letters", letter)
    assert line.startswith("oversized: too big  (features[1]@99)")
    assert "b'\\xff\\xff\\xff'" in line
    event = encode_model_event("promotion", "m", 2, previous_version=1, reason="challenger")
    expected = "promotion  m v2  previous_version=1 reason=challenger"
    assert describe("model-events", event) == expected


@pytest.mark.parametrize("kind", TOPICS)
def test_messages_that_do_not_fit_are_shown_not_raised(kind: str) -> None:
    assert describe(kind, b"\x00\x01").startswith("(not JSON)")
    assert describe(kind, None).startswith("(not JSON)")
    assert describe(kind, b"[1, 2]").startswith("(not an object)")
    line = describe(kind, b'{"id": 1, "features": 3, "source": 5, "proba": 1}')
    assert line  # some readable line, whatever the shape
