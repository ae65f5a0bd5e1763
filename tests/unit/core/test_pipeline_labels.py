"""The path's shortcut for plain labels answers as ``check_label`` does, learned or refused."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app import reasons
from stream_app.core.label import check_label
from stream_app.errors import RejectedMessage
from tests.unit.core.test_pipeline import Recorder, event, pipeline

CASES: list[tuple[dict[str, Any], Any]] = [
    ({}, True),
    ({}, False),
    ({}, 1),
    ({}, 0),
    ({"classes": ["yes", "no"]}, True),  # declared classes: a boolean is not one of them
    ({"classes": [0, 1]}, 1),
    ({"classes": [0, 1]}, True),  # (True == 1, but not the declared class 1)
    ({"factory": "stream_app.models:linear_regression"}, True),  # regression: not a number
    ({"factory": "stream_app.models:linear_regression"}, 3),
]


def expected(model: dict[str, Any], value: Any) -> str | None:
    """What check_label says of ``value`` for this model: None (take it) or the refusal."""
    p, _, settings = pipeline(model=model)
    try:
        check_label(value, p.learner.task, settings.model.classes, 256)
    except RejectedMessage as refused:
        return refused.reason
    return None


@pytest.mark.parametrize(("model", "value"), CASES)
def test_a_plain_label_is_learned_or_refused_as_check_label_says(
    model: dict[str, Any], value: Any
) -> None:
    p, _, _ = pipeline(model=model)
    out = Recorder()
    p.features([event(0, value)], 0.0, out)
    refused = [d["reason"] for d in out.on("dead-letters")]
    reason = expected(model, value)
    assert refused == ([] if reason is None else [reason])
    assert p.learner.examples_seen == (1 if reason is None else 0)
    assert reason is None or reason in (reasons.UNKNOWN_LABEL, reasons.INVALID_LABEL)
