"""The demo stream: deterministic, with its noise, late labels and a drift the learner detects."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.tools.settings import DemoSettings, ToolSettings
from stream_app.tools.synth import DemoStream


def take(settings: DemoSettings, events: int) -> list[Any]:
    out = []
    for message in DemoStream(settings):
        if message.event >= events:
            break
        out.append(message)
    return out


def test_the_stream_is_the_same_for_the_same_seed_except_timestamps() -> None:
    def strip(messages: list[Any]) -> list[Any]:
        bodies = []
        for m in messages:
            body = orjson.loads(m.value) if m.key else m.value
            if isinstance(body, dict):
                body.pop("ts", None)
            bodies.append((m.topic, m.key, body))
        return bodies

    assert strip(take(DemoSettings(), 500)) == strip(take(DemoSettings(), 500))
    assert strip(take(DemoSettings(), 500)) != strip(take(DemoSettings(seed=7), 500))


def test_noise_late_labels_and_every_label_owed_is_sent() -> None:
    settings = DemoSettings(label_delay=50)
    stream = DemoStream(settings)
    messages = []
    for message in stream:
        if message.event >= 2000:
            break
        messages.append(message)
    messages += list(stream.late_labels())
    events = [m for m in messages if m.topic == "features" and m.event >= 0]
    bad = [m for m in messages if m.topic == "features" and m.event < 0]
    labels = [orjson.loads(m.value) for m in messages if m.topic == "labels"]
    late = [label for label in labels if not label["id"].startswith("ghost-")]
    inline = [e for e in events if e.labelled]
    assert len(events) == 2000
    assert len(inline) + len(late) == 2000  # every event gets exactly one label
    assert 0 < len(bad) < 2000 * settings.bad_share * 2
    assert 0.3 < len(late) / 2000 < 0.7


def learn_stream(settings: ToolSettings, events: int) -> list[tuple[int, str]]:
    """Serve and learn the stream as a worker would: inline labels at once, late ones on arrival."""
    learner = Learner(settings)
    served: dict[str, Any] = {}
    happened = []
    for message in DemoStream(settings.demo):
        if message.event >= events:
            break
        if message.key is None:
            continue
        body = orjson.loads(message.value)
        if message.topic == "features":
            answer, shadow = learner.answer(body["features"])
            if "label" not in body:
                served[body["id"]] = (body["features"], answer, shadow)
                continue
            features, label = body["features"], body["label"]
        elif body["id"] in served:
            features, answer, shadow = served.pop(body["id"])
            label = body["label"]
        else:
            continue
        outcome = learner.learn(LabeledExample(body["id"], features, label, answer, shadow, 0.0))
        happened += [(message.event, event.kind) for event in outcome.events]
    return happened


@pytest.mark.parametrize("seed", [42, 1, 2, 3])
def test_the_concept_change_is_detected_as_drift_within_3000_events(
    seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="stream_app")  # quiet, and restored afterwards
    settings = ToolSettings().replace(demo={"seed": seed})
    happened = learn_stream(settings, 3000)
    drifts = [at for at, kind in happened if kind == "drift"]
    assert drifts and settings.demo.change_at <= drifts[0] < 3000
    assert "promotion" in [kind for _, kind in happened]
