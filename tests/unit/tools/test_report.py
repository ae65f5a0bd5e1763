"""The report's pure part: joining predictions to labels, rolling quality, slices, marks."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from stream_app.tools.charts import draw_png
from stream_app.tools.marks import marks
from stream_app.tools.report import Point, ReportData, build, rolling, scored, slices
from stream_app.tools.settings import ReportSettings


def prediction(i: int, prediction: object, version: int = 0) -> dict[str, object]:
    body = {"id": f"e{i}", "prediction": prediction, "proba": {"true": 0.8}}
    return {**body, "model_version": version, "served_at": 1000.0 + i, "latency_ms": float(i % 5)}


def test_scored_joins_by_id_in_time_order_and_skips_unlabelled_and_unanswered() -> None:
    predictions = [prediction(3, True), prediction(1, False), prediction(2, None), prediction(4, 1)]
    labels = {"e1": False, "e2": True, "e3": False}
    points = scored(predictions, labels, "classification")
    assert points == [Point(1001.0, 0, 0.0), Point(1003.0, 0, 1.0)]


def test_rolling_accuracy_and_mae_over_a_window() -> None:
    errors = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    points = [Point(float(i), 0, e) for i, e in enumerate(errors)]
    assert [q for _, q in rolling(points, 3, "accuracy")] == pytest.approx(
        [0.0, 0.5, 2 / 3, 2 / 3, 1 / 3, 0.0]
    )
    assert [q for _, q in rolling(points, 2, "mae")] == [1.0, 0.5, 0.0, 0.5, 1.0, 1.0]


def test_rolling_restarts_with_each_version_and_breaks_the_line() -> None:
    points = [Point(0.0, 1, 1.0), Point(1.0, 1, 1.0), Point(2.0, 2, 0.0), Point(3.0, 2, 0.0)]
    series = rolling(points, 10, "accuracy")
    assert [q for _, q in series][:2] == [0.0, 0.0]
    assert math.isnan(series[2][1])
    assert [q for _, q in series][3:] == [1.0, 1.0]  # the new version's window holds only its own


def test_slices_cover_the_span_and_keep_the_last_point() -> None:
    points = [(float(t), float(t)) for t in range(10)]
    cut = slices(points, 5, 0.0, 9.0)
    assert [len(values) for _, values in cut] == [2, 2, 2, 2, 2]
    assert sum(len(values) for _, values in slices(points, 3, 0.0, 9.0)) == 10


def test_marks_name_the_events_worth_a_line_and_skip_checkpoints() -> None:
    events = [
        (30.0, {"type": "rollback", "model_version": 4}),
        (10.0, {"type": "drift", "model_version": 2}),
        (20.0, {"type": "checkpoint", "model_version": 3}),
        (25.0, {"type": "pin", "model_version": 1}),
    ]
    assert [(m.t, m.kind, m.text) for m in marks(events, [5.0])] == [
        (5.0, "change", "concept change"),
        (10.0, "drift", "drift in v2"),
        (25.0, "pin", "pin v1"),
        (30.0, "rollback", "rollback: v4"),
    ]


def test_build_puts_everything_relative_to_the_first_prediction_and_draws() -> None:
    predictions = [prediction(i, i % 2 == 0) for i in range(100)]
    shadow = [prediction(i, True, version=1) for i in range(50, 100)]
    data = ReportData(
        predictions=predictions,
        shadow=shadow,
        labels={f"e{i}": True for i in range(100)},
        events=[(1050.0, {"type": "drift", "model_version": 0})],
        dead_letters=Counter({"invalid_json": 3}),
        changes=[1040.0],
    )
    charts = build(data, ReportSettings(quality_window=10, buckets=4))
    assert charts.metric == "accuracy" and charts.t0 == 1000.0
    assert charts.serving[-1] == (99.0, 0.5)
    assert charts.shadow[0][0] == 50.0 and charts.shadow[-1][1] == 1.0
    assert [t for t, _ in charts.throughput] == pytest.approx([12.375, 37.125, 61.875, 86.625])
    assert sum(rate for _, rate in charts.throughput) * 99.0 / 4 == pytest.approx(100)
    assert all(p50 <= p99 for _, p50, p99 in charts.latency)
    assert [(m.t, m.kind) for m in charts.marks] == [(40.0, "change"), (50.0, "drift")]
    assert charts.counts["dead letters"] == 3
    png = draw_png(charts, "test")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_regression_reports_mae() -> None:
    predictions = [{**prediction(i, 2.0), "proba": {}} for i in range(4)]
    data = ReportData(predictions=predictions, labels={"e0": 3.0, "e1": 1.0})
    charts = build(data, ReportSettings())
    assert charts.metric == "mae" and [q for _, q in charts.serving] == [1.0, 1.0]
