"""``demo --keys``: the keyed SEA stream, and the keyed numbers of the live view and the report."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import orjson
from rich.console import Console

from stream_app.tools.charts import _page, draw_png
from stream_app.tools.keyed import keyed_summary
from stream_app.tools.report import ReportData, build
from stream_app.tools.settings import DemoSettings, ReportSettings
from stream_app.tools.synth import KEY_FIELD, SEA_THRESHOLDS, DemoMessage, DemoStream
from stream_app.tools.view import Tally, announce

EVENTS = 3000


def keyed_stream(settings: DemoSettings, keys: int) -> list[DemoMessage]:
    stream = DemoStream(settings, keys)
    out = []
    for message in stream:
        if message.event >= EVENTS:
            break
        out.append(message)
    return out + list(stream.late_labels())


def test_each_event_names_its_key_and_events_and_labels_are_keyed_by_it() -> None:
    messages = keyed_stream(DemoSettings(), 20)
    events = [m for m in messages if m.topic == "features" and m.event >= 0]
    bodies = [orjson.loads(m.value) for m in events]
    assert len(events) == EVENTS
    assert {b[KEY_FIELD] for b in bodies} == {f"user-{k}" for k in range(20)}
    assert all(m.key == b[KEY_FIELD].encode() for m, b in zip(events, bodies, strict=True))
    users = {b["id"]: b[KEY_FIELD] for b in bodies}
    late = [orjson.loads(m.value) for m in messages if m.topic == "labels"]
    owed = [label for label in late if label["id"] in users]
    assert owed and all(label[KEY_FIELD] == users[label["id"]] for label in owed)
    keyed_by = {m.key for m in messages if m.topic == "labels" and m.key and b"ghost" not in m.key}
    assert keyed_by <= {user.encode() for user in users.values()}
    assert all("label" in b or b["id"] in {x["id"] for x in owed} for b in bodies)


def wrong_shares(messages: list[DemoMessage], key: str, change_at: int) -> tuple[float, float]:
    """Shares of a key's labels that disagree with its own SEA variant, before and after its
    ``change_at``-th event."""
    labels = {
        orjson.loads(m.value)["id"]: orjson.loads(m.value)["label"]
        for m in messages
        if m.topic == "labels"
    }
    wrong, total = [0, 0], [0, 0]
    number = int(key.split("-")[1])
    for m in messages:
        if m.topic != "features" or m.event < 0:
            continue
        body: dict[str, Any] = orjson.loads(m.value)
        if body[KEY_FIELD] != key:
            continue
        after = int(sum(total) >= change_at)
        assert m.change == (sum(total) == change_at and number < 3)
        label = body.get("label", labels.get(body["id"]))
        x = body["features"]
        truth = x["x1"] + x["x2"] > SEA_THRESHOLDS[number % len(SEA_THRESHOLDS)]
        wrong[after] += label != truth
        total[after] += 1
    return wrong[0] / total[0], wrong[1] / total[1]


def test_only_the_drifting_keys_change_concept_after_their_own_events() -> None:
    settings = DemoSettings(key_change_at=100, drifting_keys=3)
    messages = keyed_stream(settings, 8)  # ~375 events a key
    noise = 4 * settings.flip_share  # a key has 100 events before the change: allow for chance
    for key in ("user-0", "user-1", "user-2"):  # reversed after the change, noise aside
        before, after = wrong_shares(messages, key, 100)
        assert before < noise and after > 1 - noise
    for key in ("user-3", "user-4", "user-7"):  # the same concept throughout
        assert max(wrong_shares(messages, key, 100)) < noise
    assert sum(m.change for m in messages) == 3


def test_the_unkeyed_stream_marks_its_concept_changes() -> None:
    messages = [m for m in keyed_stream(DemoSettings(change_at=1000, change_every=1500), 0)]
    assert [m.event for m in messages if m.change] == [1000, 2500]


def test_the_keyed_stream_is_deterministic_and_the_unkeyed_one_is_unchanged() -> None:
    def bodies(messages: list[DemoMessage]) -> list[Any]:
        out = []
        for m in messages:
            body = orjson.loads(m.value) if m.key else m.value
            if isinstance(body, dict):
                body.pop("ts", None)
            out.append((m.topic, m.key, body))
        return out

    assert bodies(keyed_stream(DemoSettings(), 5)) == bodies(keyed_stream(DemoSettings(), 5))
    plain = [m for m in keyed_stream(DemoSettings(), 0) if m.topic == "features" and m.event >= 0]
    assert all(KEY_FIELD not in orjson.loads(m.value) for m in plain)
    assert all(m.key == orjson.loads(m.value)["id"].encode() for m in plain)


def keyed_prediction(i: int, key: str, fallback: bool, version: int, right: bool) -> dict[str, Any]:
    body = {"id": f"e{i}", "prediction": right, "proba": {"true": 0.8}, "model_key": key}
    if fallback:
        body["fallback"] = True
    return {**body, "model_version": version, "served_at": 1000.0 + i, "latency_ms": 1.0}


def keyed_data() -> ReportData:
    """Three keys; the first 30 answers by the fallback (all wrong), the rest own (all right)."""
    predictions = [
        keyed_prediction(i, f"user-{i % 3}", i < 30, i % 3 if i >= 30 else 5, i >= 30)
        for i in range(90)
    ]
    events = [
        (1040.0, {"type": "drift", "model_version": 1, "model_key": "user-1"}),
        (1050.0, {"type": "drift", "model_version": 2, "model_key": "user-1"}),
        (1060.0, {"type": "drift", "model_version": 0, "model_key": "user-2"}),
        (1070.0, {"type": "promotion", "model_version": 3, "model_key": "user-2"}),
        (1080.0, {"type": "checkpoint", "model_version": 7}),
    ]
    return ReportData(
        predictions=predictions, labels={f"e{i}": True for i in range(90)}, events=events
    )


def test_the_report_counts_keys_drifting_keys_and_who_answered() -> None:
    summary = keyed_summary(keyed_data())
    assert summary is not None
    assert (summary.keys, summary.own, summary.fallback) == (3, 60, 30)
    assert summary.drifting == {"user-1": 2, "user-2": 1}
    assert (summary.own_quality, summary.fallback_quality) == (1.0, 0.0)
    assert keyed_summary(ReportData(predictions=[{"id": "a", "served_at": 1.0}])) is None


def test_the_report_draws_own_models_and_fallback_as_two_unbroken_lines() -> None:
    data = keyed_data()
    charts = build(data, ReportSettings(quality_window=10, buckets=5))
    assert len(charts.fallback) == 30 and len(charts.serving) == 60
    assert not any(math.isnan(q) for _, q in charts.serving)  # versions of keys do not break it
    assert {q for _, q in charts.fallback} == {0.0} and {q for _, q in charts.serving} == {1.0}
    assert [m.text for m in charts.marks][:2] == ["drift in user-1 v1", "drift in user-1 v2"]
    page = _page(data, charts, draw_png(charts, "keyed"), "keyed")
    assert "<h2>Keyed models</h2>" in page and "<td>user-1</td><td>2</td>" in page
    assert "3 keys, 2 in drift" in page


def test_the_live_view_counts_keys_fallback_answers_and_keys_in_drift() -> None:
    tally = Tally(metrics={"stream_app_model_keys": 3.0})
    for p in keyed_data().predictions:
        tally.answered(p)
    for _, event in keyed_data().events:
        announce(event, tally)
    assert (len(tally.keys), tally.fallback_answers, tally.predictions) == (3, 30, 90)
    assert tally.key_drifts == Counter({"user-1": 2, "user-2": 1})
    assert tally.keyed() == (
        "3 keys (3 in memory) · 2 in drift (user-1 2 times, user-2) · "
        "answers: 60 own model, 30 fallback (33%)"
    )
    assert "keys: 3 keys" in tally.line()
    assert any("user-2's v3 now serves" in news for news in tally.news)
    assert "keys" not in Tally().line()
    console = Console(width=200, record=True)
    console.print(tally.panel("keyed demo"))
    assert "keyed models" in console.export_text()
    console = Console(width=200, record=True)
    console.print(Tally().panel("demo"))
    assert "keyed models" not in console.export_text()
