"""``stream-app score INPUT --version V --out OUT``: offline batch scoring with a stored version.

The offline half of "one model, many ways to serve it": the same version the stream served scores
a JSONL or CSV file (read as ``stream-app produce`` reads it), through the batch inference path
(:func:`~stream_app.core.predict.predict_many`). Kafka is read once, for the version; nothing is
produced. Each output line has the prediction message's shape, plus the input's ``label`` when
it had one, so the file can be evaluated offline. Lines that are not valid events are counted by
reason (the dead-letter reasons) and left out.

>>> from stream_app.settings import ModelSettings
>>> from stream_app.core.predict import fresh_model
>>> model = fresh_model(ModelSettings())
>>> summary = ScoreSummary()
>>> lines = score_events(model, [b'{"id": "a", "features": {"x": 1}}', b'nope'], summary, 1000)
>>> [orjson.loads(line)["id"] for line in lines], dict(summary.rejected)
(['a'], {'invalid_json': 1})
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream_app.core.decode import NO_LABEL, FeatureEvent, decode_event
from stream_app.core.predict import ServingModel, predict_many
from stream_app.core.quality import error_of
from stream_app.errors import RejectedMessage, StreamAppError
from stream_app.settings import LimitSettings, Settings

__all__ = ["ScoreSummary", "load_version", "score_events", "score_file"]


@dataclass
class ScoreSummary:
    """What a scoring run did: counts, rejections by reason, and quality where labels were given."""

    scored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    labelled: int = 0
    error_sum: float = 0.0
    seconds: float = 0.0

    def line(self, model: ServingModel) -> str:
        """Say it in one line for people.

        >>> from stream_app.settings import ModelSettings
        >>> from stream_app.core.predict import fresh_model
        >>> ScoreSummary(scored=4, labelled=4, error_sum=1.0, seconds=2.0).line(
        ...     fresh_model(ModelSettings(), version=3))
        'scored 4 events with default v3 in 2.0s (2/s); accuracy 0.7500 on 4 labelled'
        """
        rate = self.scored / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"scored {self.scored} events with {model.name} v{model.version} "
            f"in {self.seconds:.1f}s ({rate:.0f}/s)"
        )
        if self.labelled:
            mean = self.error_sum / self.labelled
            metric, value = (
                ("accuracy", 1 - mean) if model.task == "classification" else ("mae", mean)
            )
            text += f"; {metric} {value:.4f} on {self.labelled} labelled"
        if self.rejected:
            reasons = ", ".join(f"{r} {n}" for r, n in self.rejected.most_common())
            text += f"; left out {sum(self.rejected.values())}: {reasons}"
        return text


def score_events(
    model: ServingModel,
    values: Iterable[bytes],
    summary: ScoreSummary,
    batch: int,
    limits: LimitSettings | None = None,
    min_rows: int = 500,
) -> Iterator[bytes]:
    """Decode events, predict them a batch at a time, and yield one JSON output line each."""
    limits = limits or LimitSettings()
    pending: list[FeatureEvent] = []
    for value in values:
        try:
            pending.append(decode_event(value, limits))
        except RejectedMessage as rejected:
            summary.rejected[rejected.reason] += 1
            continue
        if len(pending) >= batch:
            yield from _score(model, pending, summary, min_rows)
            pending = []
    if pending:
        yield from _score(model, pending, summary, min_rows)


def _score(
    model: ServingModel, events: list[FeatureEvent], summary: ScoreSummary, min_rows: int
) -> Iterator[bytes]:
    """Predict one batch and shape the output lines."""
    answers = predict_many(model, [e.features for e in events], min_rows)
    for event, answer in zip(events, answers, strict=True):
        line: dict[str, Any] = {
            "id": event.id,
            "prediction": answer.prediction,
            "proba": answer.proba,
            "model": model.name,
            "model_version": model.version,
        }
        if event.label is not NO_LABEL:
            line["label"] = event.label
            error = error_of(model.task, answer.prediction, event.label)
            if error is not None:
                summary.labelled += 1
                summary.error_sum += error
        summary.scored += 1
        yield orjson.dumps(line)


def load_version(settings: Settings, version: int | None) -> ServingModel:
    """Read the registry from Kafka once and load one version (default: the serving one)."""
    from stream_app.registry.checkpoint import load_model
    from stream_app.worker.operations import read_registry, run

    name = settings.model.name
    registry = run(read_registry(settings))
    if version is None:
        newest = registry.newest(name, "serving")
        if newest is None:
            raise StreamAppError(f"model {name} has no stored version to score with")
        version = newest.version
    if registry.record(name, version) is None:
        raise StreamAppError(f"model {name} v{version} is not stored")
    return load_model(registry, name, version).model


def score_file(
    settings: Settings,
    model: ServingModel,
    source: Path,
    out: Path,
    *,
    label_column: str = "label",
    id_column: str | None = None,
    fmt: str = "auto",
) -> ScoreSummary:
    """Score every event of ``source`` into ``out`` (JSONL), with a progress bar on a terminal."""
    from rich.console import Console
    from rich.progress import Progress

    from stream_app.tools.produce import Columns, read_items, readable_values

    summary = ScoreSummary()
    started = time.perf_counter()
    with source.open("rb") as handle:
        total = sum(1 for _ in handle)
    console = Console(stderr=True)
    items = read_items(source, Columns(label=label_column, id=id_column), fmt)
    with (
        Progress(console=console, disable=not console.is_terminal) as progress,
        out.open("wb") as sink,
    ):
        task = progress.add_task(f"scoring with {model.name} v{model.version}", total=total)

        values = readable_values(items, lambda: progress.advance(task), summary.rejected)
        inference = settings.inference
        for line in score_events(
            model, values, summary, inference.max_batch, settings.limits, inference.many_min_rows
        ):
            sink.write(line + b"\n")
    summary.seconds = time.perf_counter() - started
    return summary
