"""``stream-app report``: what happened, from the topics: quality, latency, throughput, events.

The pure part joins predictions to labels by event id and turns them into series over time:
rolling quality of the serving model and of the challenger in shadow (accuracy, or MAE for
regression), latency percentiles and throughput per time slice, and the marks of model events
(:mod:`stream_app.tools.marks`). While a canary answers a share of events, its answers make a
line of their own, so that the incumbent's line is the incumbent's. The Kafka part
(:func:`collect`) only reads the topics to their end; :mod:`stream_app.tools.charts` draws.

>>> predictions = [{"id": f"e{i}", "prediction": i % 2 == 0, "proba": {"true": 0.9},
...                 "model_version": 0, "served_at": 100.0 + i, "latency_ms": 1.0}
...                for i in range(6)]
>>> labels = {f"e{i}": True for i in range(6)}
>>> points = scored(predictions, labels, "classification")
>>> [p.error for p in points]
[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
>>> [round(q, 2) for _, q in rolling(points, window=2, metric="accuracy")]
[1.0, 0.5, 0.5, 0.5, 0.5, 0.5]
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from stream_app.core.quality import error_of
from stream_app.kafka.security import client_kwargs
from stream_app.tools.marks import Mark, canary_spans, marks
from stream_app.tools.settings import ReportSettings, ToolSettings

__all__ = [
    "Charts",
    "Point",
    "ReportData",
    "build",
    "collect",
    "percentile",
    "quality_around",
    "rolling",
    "scored",
    "slices",
    "task_of",
]


class Point(NamedTuple):
    """One labelled prediction: when it was served, by which version, and its error."""

    t: float
    version: int
    error: float


@dataclass
class ReportData:
    """The messages a report is drawn from, as read from the topics."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    shadow: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    """(Kafka timestamp in epoch s, model event)."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    changes: list[float] = field(default_factory=list)
    """Known concept changes (epoch s), when the caller knows them (the demo does)."""


@dataclass
class Charts:
    """Everything drawn, in seconds since ``t0`` (the first prediction)."""

    t0: float
    metric: str
    window: int
    """Labelled predictions in the rolling quality."""
    serving: list[tuple[float, float]]
    shadow: list[tuple[float, float]]
    """Rolling quality; a NaN value separates two challengers."""
    canary: list[tuple[float, float]]
    """Rolling quality of a canary on the share it answered; a NaN separates two canaries."""
    latency: list[tuple[float, float, float]]
    """(t, p50 ms, p99 ms) per time slice with predictions."""
    throughput: list[tuple[float, float]]
    """(t, predictions/s) per time slice."""
    marks: list[Mark]
    counts: dict[str, int]
    fallback: list[tuple[float, float]] = field(default_factory=list)
    """Keyed models: rolling quality of the answers the fallback gave young keys; the ``serving``
    line is then the keys' own models' answers."""


def task_of(predictions: Iterable[dict[str, Any]]) -> str:
    """Tell the task from the predictions: probabilities mean classification.

    >>> task_of([{"proba": {}}, {"proba": {"a": 1.0}}]), task_of([{"prediction": 2.5, "proba": {}}])
    ('classification', 'regression')
    """
    return "classification" if any(p.get("proba") for p in predictions) else "regression"


def scored(predictions: Iterable[dict[str, Any]], labels: dict[str, Any], task: str) -> list[Point]:
    """Join predictions to labels by id; return the labelled ones with their error, in time order.

    A prediction of None (a model that has learned nothing yet) or without a label is left out.
    """
    points = []
    for p in predictions:
        label = labels.get(str(p.get("id")))
        if label is None:
            continue
        try:
            error = error_of(task, p.get("prediction"), label)
        except (TypeError, ValueError):
            continue
        if error is not None:
            points.append(Point(float(p["served_at"]), int(p.get("model_version", -1)), error))
    points.sort()
    return points


def rolling(points: Sequence[Point], window: int, metric: str) -> list[tuple[float, float]]:
    """Return the rolling quality over the last ``window`` points, restarting with each version.

    A restart is marked by a ``(t, nan)`` point so that a chart does not join two models' lines.

    >>> pts = [Point(1.0, 1, 1.0), Point(2.0, 1, 3.0), Point(3.0, 2, 0.5)]
    >>> rolling(pts, 2, "mae")
    [(1.0, 1.0), (2.0, 2.0), (3.0, nan), (3.0, 0.5)]
    """
    out: list[tuple[float, float]] = []
    errors: deque[float] = deque(maxlen=window)
    total, version = 0.0, None
    for point in points:
        if version is not None and point.version != version:
            errors.clear()
            total = 0.0
            out.append((point.t, math.nan))
        version = point.version
        if len(errors) == errors.maxlen:
            total -= errors[0]
        errors.append(point.error)
        total += point.error
        mean = total / len(errors)
        out.append((point.t, 1.0 - mean if metric == "accuracy" else mean))
    return out


def slices(
    points: Sequence[tuple[float, float]], count: int, start: float, end: float
) -> list[tuple[float, list[float]]]:
    """Cut (t, value) points into ``count`` equal time slices; return (slice middle, values).

    >>> slices([(0.0, 1.0), (0.5, 2.0), (3.9, 3.0)], 2, 0.0, 4.0)
    [(1.0, [1.0, 2.0]), (3.0, [3.0])]
    """
    width = (end - start) / count if end > start else 1.0
    groups: list[list[float]] = [[] for _ in range(count)]
    for t, value in points:
        groups[min(int((t - start) / width), count - 1)].append(value)
    return [(start + (i + 0.5) * width, values) for i, values in enumerate(groups)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Return the nearest-rank percentile ``q`` (0..1) of sorted values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _split_canary(
    points: Sequence[Point], spans: Sequence[tuple[int, float]]
) -> tuple[list[Point], list[Point]]:
    """Split the served points into the incumbent's (and later servers') and the canaries'."""
    ends = dict(spans)
    serving: list[Point] = []
    canary: list[Point] = []
    for point in points:
        (canary if point.t < ends.get(point.version, -math.inf) else serving).append(point)
    return serving, canary


def quality_around(
    points: Sequence[Point], at: float, window: int, metric: str
) -> tuple[float | None, float | None]:
    """Quality over the ``window`` labelled predictions just before ``at`` and just after it.

    >>> pts = [Point(float(t), 0, 0.0 if t < 5 else 1.0) for t in range(10)]
    >>> quality_around(pts, 5.0, 3, "accuracy")
    (1.0, 0.0)
    """
    before = [p.error for p in points if p.t < at][-window:]
    after = [p.error for p in points if p.t >= at][:window]
    return _mean_quality(before, metric), _mean_quality(after, metric)


def _mean_quality(errors: Sequence[float], metric: str) -> float | None:
    if not errors:
        return None
    mean = sum(errors) / len(errors)
    return 1.0 - mean if metric == "accuracy" else mean


def _unversioned(predictions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give keyed predictions one version number for the rolling quality.

    Each key numbers its own versions, so a line that restarted at every change of version would
    restart at nearly every point.
    """
    return [{**p, "model_version": -1} for p in predictions]


def build(data: ReportData, settings: ReportSettings) -> Charts:
    """Turn the messages into the charts' series (times relative to the first prediction)."""
    task = task_of(data.predictions)
    metric = "accuracy" if task == "classification" else "mae"
    answers, fallback = data.predictions, []
    if any("model_key" in p for p in data.predictions):
        answers = _unversioned(p for p in data.predictions if p.get("fallback") is not True)
        fallback = _unversioned(p for p in data.predictions if p.get("fallback") is True)
    serving, canary = _split_canary(scored(answers, data.labels, task), canary_spans(data.events))
    answered_by_fallback = scored(fallback, data.labels, task)
    shadow = scored(data.shadow, data.labels, task)
    served = sorted(
        (float(p["served_at"]), float(p.get("latency_ms", 0.0))) for p in data.predictions
    )
    t0 = served[0][0] if served else time.time()
    end = served[-1][0] if served else t0
    latency, throughput = [], []
    for t, values in slices(served, settings.buckets, t0, end):
        width = (end - t0) / settings.buckets if end > t0 else 1.0
        throughput.append((t - t0, len(values) / width))
        if values:
            values.sort()
            latency.append((t - t0, percentile(values, 0.5), percentile(values, 0.99)))
    window = settings.quality_window
    return Charts(
        t0=t0,
        metric=metric,
        window=window,
        serving=[(t - t0, q) for t, q in rolling(serving, window, metric)],
        shadow=[(t - t0, q) for t, q in rolling(shadow, window, metric)],
        canary=[(t - t0, q) for t, q in rolling(canary, window, metric)],
        fallback=[(t - t0, q) for t, q in rolling(answered_by_fallback, window, metric)],
        latency=latency,
        throughput=throughput,
        marks=[m._replace(t=m.t - t0) for m in marks(data.events, data.changes)],
        counts={
            "predictions": len(data.predictions),
            "labelled": len(serving) + len(canary) + len(answered_by_fallback),
            "shadow predictions": len(data.shadow),
            "dead letters": sum(data.dead_letters.values()),
        },
    )


def collect(settings: ToolSettings, since: float = 0.0) -> ReportData:
    """Read the topics from the beginning to their current end (messages from ``since`` on)."""
    return asyncio.run(_collect(settings, since))


async def _collect(settings: ToolSettings, since: float) -> ReportData:
    t = settings.topics
    names = [t.predictions, t.predictions_shadow, t.labels, t.features, t.model_events]
    records = await _read_to_end(settings, [*names, t.dead_letters], since)
    data = ReportData()
    data.predictions = _bodies(records[t.predictions])
    data.shadow = _bodies(records[t.predictions_shadow])
    for body in _bodies(records[t.features]) + _bodies(records[t.labels]):
        if isinstance(body.get("id"), str) and body.get("label") is not None:
            data.labels.setdefault(body["id"], body["label"])
    for record in records[t.model_events]:
        event = _body(record.value)
        if event is not None:
            data.events.append((record.timestamp / 1000.0, event))
    for body in _bodies(records[t.dead_letters]):
        data.dead_letters[str(body.get("reason"))] += 1
    return data


def _body(value: bytes | None) -> dict[str, Any] | None:
    """Decode a JSON object, or None for anything else (a report skips what it cannot read)."""
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _bodies(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [body for body in (_body(r.value) for r in records) if body is not None]


async def _read_to_end(
    settings: ToolSettings, topics: list[str], since: float
) -> dict[str, list[Any]]:
    """Every record of ``topics`` up to their end offsets now, with a timestamp from ``since``."""
    from aiokafka import AIOKafkaConsumer

    from stream_app.kafka.read import partitions_of, read_to_end

    out: dict[str, list[Any]] = {topic: [] for topic in topics}
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topics)
        timeout = settings.report.read_timeout_s
        async for tp, records in read_to_end(consumer, tps, timeout_s=timeout):
            out[tp.topic].extend(r for r in records if r.timestamp >= since * 1000)
        return out
    finally:
        await consumer.stop()
