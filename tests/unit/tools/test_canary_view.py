"""A canary in the live view and in the report: its steps, rollbacks and end, and why it waits.

The model events come from a real Learner's canary (as the worker encodes them for
``model-events``); the view and the report are pure functions over them, so no broker is needed.
"""

from __future__ import annotations

import http.server
import math
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from rich.console import Console

from stream_app.core.canary import CANARY_DONE, CANARY_ROLLBACK, CANARY_STEP
from stream_app.core.events import ModelEvent
from stream_app.core.learn import Learner
from stream_app.core.messages import encode_model_event
from stream_app.tools.charts import draw_png
from stream_app.tools.marks import canary_spans, marks
from stream_app.tools.report import ReportData, build
from stream_app.tools.settings import ReportSettings
from stream_app.tools.view import Tally, announce, canary_text, health
from stream_app.worker.rollout import canary_status
from tests.unit.core.test_canary import WINDOW, run, sea, settings, trained


def as_sent(event: ModelEvent) -> dict[str, Any]:
    """A model event as a reader of ``model-events`` gets it."""
    body: dict[str, Any] = orjson.loads(
        encode_model_event(event.kind, "m", event.version, **event.fields)
    )
    return body


def canary_run(flip: bool) -> list[dict[str, Any]]:
    """Start a canary of a better (or, with ``flip``, a worse) version; return its events."""
    s = settings()
    learner = Learner(s)
    learner.challenge(trained(s, sea(3000, seed=1), flip=flip))
    events = [learner.start_canary(0.05, "operator"), *run(learner, sea(4000))]
    return [as_sent(e) for e in events]


def rendered(tally: Tally) -> str:
    console = Console(record=True, width=240)
    console.print(tally.panel("demo"))
    return console.export_text()


def test_the_live_view_tells_each_step_and_the_end_of_a_better_canary() -> None:
    tally = Tally()
    texts = [announce(event, tally) for event in canary_run(flip=False)]
    assert [e["type"] for e in tally.canaries] == [CANARY_STEP] * 3 + [CANARY_DONE]
    assert texts[0] == "canary: v9 answers 5% of events (operator), the incumbent the rest"
    assert texts[1] is not None and texts[1].startswith("canary v9 steps up 5% -> 25% (accuracy ")
    assert texts[2] is not None and texts[2].startswith("canary v9 steps up 25% -> 50%")
    assert texts[3] is not None and texts[3].startswith("canary v9 reached 100% and serves")
    assert texts[4] == "v9 now serves (was v0, canary)"
    assert tally.canary_counts() == "3 canary step, 0 canary rollback, 1 canary done"
    assert "3 canary step, 0 canary rollback, 1 canary done" in rendered(tally)
    assert all(any(text in news for news in tally.news) for text in texts if text)


def test_the_live_view_tells_a_rollback_with_both_qualities() -> None:
    tally = Tally()
    events = canary_run(flip=True)
    texts = [announce(event, tally) for event in events]
    rollback = events[-1]
    assert [e["type"] for e in events] == [CANARY_STEP, CANARY_ROLLBACK]
    mine, theirs = rollback["accuracy_canary"], rollback["accuracy_incumbent"]
    assert texts[-1] == (
        f"canary v9 rolled back at 5% (quality_regression; accuracy {mine:.3f} vs "
        f"{theirs:.3f}): the incumbent answers everything"
    )


def test_without_labels_the_live_view_says_why_the_canary_takes_no_step() -> None:
    s = settings()
    learner = Learner(s)
    learner.challenge(trained(s, sea(100, seed=1), flip=False))
    tally = Tally()
    announce(as_sent(learner.start_canary(0.25, "operator")), tally)
    tally.canary = orjson.loads(orjson.dumps(canary_status(learner)))  # as /health says it
    why = f"no step: no labels yet on the canary share (0 of {WINDOW})"
    assert canary_text(tally.canary) == f"v9 answers 25%   accuracy n/a vs n/a   {why}"
    assert why in tally.line() and why in rendered(tally)
    run(learner, sea(WINDOW))  # labels on both shares, the canary's still short of a window
    tally.canary = canary_status(learner)
    assert tally.canary is not None and tally.canary["share"] == 0.25
    assert "no step: waiting for labels on the canary share (" in canary_text(tally.canary)
    assert "canary none" in Tally().line()  # no canary: nothing waits


@pytest.fixture
def unhealthy_worker() -> Iterator[int]:
    """A web server whose /health answers 503 with a body, as a worker that is not ready does."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = orjson.dumps({"status": "unavailable", "canary": {"version": 3, "share": 0.05}})
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_the_live_view_reads_the_canary_from_health_even_when_it_answers_503(
    unhealthy_worker: int,
) -> None:
    assert health(unhealthy_worker)["canary"] == {"version": 3, "share": 0.05}


def test_the_report_marks_every_canary_event_on_the_charts() -> None:
    events = [(2000.0 + i, event) for i, event in enumerate(canary_run(flip=False))]
    found = [(m.kind, m.text) for m in marks(events, [])]
    assert found == [
        (CANARY_STEP, "canary v9 at 5%"),
        (CANARY_STEP, "canary v9 5% -> 25%"),
        (CANARY_STEP, "canary v9 25% -> 50%"),
        (CANARY_DONE, "canary v9 done: serves"),
        ("promotion", "v9 serves (was v0)"),
    ]
    rollback = canary_run(flip=True)[-1]
    assert [m.text for m in marks([(1.0, rollback)], [])] == [
        "canary v9 rolled back (quality_regression)"
    ]


def prediction(i: int, version: int, right: bool) -> dict[str, Any]:
    """A prediction of event ``e{i}`` (label True) served at 1000 + i by ``version``."""
    body = {"id": f"e{i}", "prediction": right, "proba": {"true": 0.5}, "model_version": version}
    return {**body, "served_at": 1000.0 + i, "latency_ms": 1.0}


def test_a_canary_answers_make_a_line_of_their_own_on_the_quality_chart() -> None:
    # v1 serves and is always right; v2 answers every third event from 20 to 60 and is always
    # wrong; it is rolled back at 60, then a second canary of v3 runs to the end and serves.
    def version_of(i: int) -> int:
        if 20 <= i < 60 and i % 3 == 0:
            return 2
        return 3 if i >= 70 and (i % 2 == 0 or i >= 90) else 1

    predictions = [prediction(i, version_of(i), version_of(i) != 2) for i in range(100)]
    events = [
        (1020.0, {"type": CANARY_STEP, "model_version": 2, "from_share": 0.0, "share": 0.25}),
        (1060.0, {"type": CANARY_ROLLBACK, "model_version": 2, "share": 0.25, "reason": "x"}),
        (1070.0, {"type": CANARY_STEP, "model_version": 3, "from_share": 0.0, "share": 0.5}),
        (1090.0, {"type": CANARY_DONE, "model_version": 3, "from_share": 0.5, "share": 1.0}),
    ]
    assert canary_spans(events) == [(2, 1060.0), (3, 1090.0)]
    data = ReportData(
        predictions=predictions, labels={f"e{i}": True for i in range(100)}, events=events
    )
    charts = build(data, ReportSettings(quality_window=10, buckets=4))
    serving = [q for _, q in charts.serving]
    breaks = [t for t, q in charts.serving if math.isnan(q)]
    assert breaks == [90.0]  # v1 without interruption, then v3 once it serves: one break
    assert all(q == 1.0 for q in serving if not math.isnan(q))
    canary = charts.canary
    assert [t for t, q in canary if math.isnan(q)] == [70.0]  # v2's line, then v3's
    answered_by_v2 = sum(version_of(i) == 2 for i in range(100))
    assert [q for t, q in canary if t < 60.0] == [0.0] * answered_by_v2  # wrong on its share
    assert all(q == 1.0 for t, q in canary if t >= 70.0 and not math.isnan(q))
    assert charts.counts["labelled"] == 100
    assert [m.kind for m in charts.marks] == [
        CANARY_STEP,
        CANARY_ROLLBACK,
        CANARY_STEP,
        CANARY_DONE,
    ]
    assert draw_png(charts, "canary").startswith(b"\x89PNG\r\n\x1a\n")
