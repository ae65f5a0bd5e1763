"""The Grafana dashboard reads only metrics the worker exports (names from stream_app.core.metrics).

tests/integration/test_dashboard.py checks the same names against a real worker's scrape.
"""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.core.metrics import Metrics
from tests.deployment import dashboard, exported_names, exprs, metric_names, panels

GRID_WIDTH = 24

# What issue 7 asks the dashboard to show, as the metric families that carry it.
REQUIRED_FAMILIES = {
    "stream_app_events",  # throughput in
    "stream_app_predictions",  # throughput out
    "stream_app_predict_latency_seconds",  # p50 / p99
    "stream_app_model_quality",
    "stream_app_drift_detected",
    "stream_app_model_version",  # serving / shadow
    "stream_app_dead_letters",  # by reason
    "stream_app_consumer_lag",
    "stream_app_checkpoints",
}
# What issue 21 asks it to show: how big the serving model is.
REQUIRED_FAMILIES |= {"stream_app_model_features", "stream_app_model_bytes"}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard()


def test_every_panel_has_a_title_and_a_query(board: dict[str, Any]) -> None:
    shown = panels(board)
    assert shown
    for panel in shown:
        assert panel.get("title"), panel
        queries = exprs(panel)
        assert queries and all(q.strip() for q in queries), panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_every_query_reads_a_metric_the_worker_exports(board: dict[str, Any]) -> None:
    exported = exported_names(Metrics())
    for panel in panels(board):
        for expr in exprs(panel):
            used = metric_names(expr)
            assert used, f"{panel['title']}: no stream_app metric in {expr}"
            unknown = used - set(exported)
            assert not unknown, f"{panel['title']}: {sorted(unknown)} are not exported"


def test_a_misspelt_metric_would_be_caught() -> None:
    exported = exported_names(Metrics())
    assert "stream_app_events_total" in exported
    assert "stream_app_predict_latency_seconds_bucket" in exported
    assert "stream_app_events" not in exported  # a counter is stored with _total
    assert metric_names("rate(stream_app_event_total[1m])") - set(exported)


def test_the_dashboard_shows_what_the_issue_asks_for(board: dict[str, Any]) -> None:
    exported = exported_names(Metrics())
    families = {exported[name] for p in panels(board) for e in exprs(p) for name in metric_names(e)}
    assert REQUIRED_FAMILIES - families == set()
    latency = [e for p in panels(board) for e in exprs(p) if "predict_latency_seconds" in e]
    assert any("histogram_quantile(0.5," in e for e in latency)
    assert any("histogram_quantile(0.99," in e for e in latency)


def test_queries_have_balanced_brackets(board: dict[str, Any]) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    for panel in panels(board):
        for expr in exprs(panel):
            stack: list[str] = []
            for char in expr:
                if char in "([{":
                    stack.append(char)
                elif char in pairs:
                    assert stack and stack.pop() == pairs[char], expr
            assert not stack, expr


def test_panels_have_unique_ids_and_fit_the_grid_without_overlap(board: dict[str, Any]) -> None:
    shown = panels(board)
    ids = [p["id"] for p in shown]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for panel in shown:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_WIDTH, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    assert board["uid"] and board["title"]
