"""``stream-app train FILE --factory M:F --out F``: train a model offline on history, to start from.

Most teams have labelled history before they have a stream. This command trains a fresh model from a
factory on a CSV or JSONL file (read as ``stream-app produce`` reads it), row by row in file order,
and writes it as an artifact (:mod:`stream_app.artifact`), signed when ``registry.signing_key`` is
set. ``stream-app models import F`` then brings it in as a shadow version, and ``models canary`` or
``models promote`` lets it serve.

Each row is predicted before it is learned, exactly as River's ``evaluate.progressive_val_score``
does (the estimator's own ``predict_one``, the same ``river.metrics`` object), so the figure printed
is River's on the same rows: accuracy for a classifier, MAE for a regressor. Offline training learns
every labelled row: the noise guard and the drift monitor are the stream's, not this command's.
Rows that are not valid labelled events are left out and counted by reason (the dead-letter reasons,
or why a line could not be read).

>>> from stream_app.settings import ModelSettings
>>> from stream_app.core.predict import fresh_model
>>> model, summary = fresh_model(ModelSettings()), TrainSummary()
>>> rows = [b'{"id": "a", "features": {"x": 1}, "label": true}', b'{"id": "b", "features": {}}',
...         b'{"id": "c", "features": {"x": 2}}',
...         b'{"id": "d", "features": {"x": -1}, "label": false}']
>>> train_events(model, rows, summary)
>>> summary.trained, model.examples_learned, sorted(summary.rejected.items())
(2, 2, [('invalid_features', 1), ('invalid_label', 1)])
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_app import reasons
from stream_app.core.decode import NO_LABEL, decode_event
from stream_app.core.factory import parse_spec
from stream_app.core.predict import ServingModel, fresh_model
from stream_app.errors import RejectedMessage, StreamAppError
from stream_app.settings import LimitSettings, Settings

__all__ = ["TrainSummary", "train_events", "train_file"]


@dataclass
class TrainSummary:
    """What a training run did: rows learned, rows left out by reason, progressive validation."""

    trained: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    metric: Any = None
    """The ``river.metrics`` object updated before each row is learned (progressive validation)."""
    seconds: float = 0.0

    @property
    def score(self) -> float | None:
        """The progressive validation figure, or None before any row was predicted."""
        return None if self.metric is None else float(self.metric.get())

    def line(self, model: ServingModel, out: Path) -> str:
        """Say it in one line for people.

        >>> from river import metrics
        >>> from stream_app.settings import ModelSettings
        >>> from stream_app.core.predict import fresh_model
        >>> accuracy = metrics.Accuracy()
        >>> for y, p in ((True, True), (False, True)): _ = accuracy.update(y, p)
        >>> TrainSummary(trained=2, metric=accuracy, seconds=1.0).line(
        ...     fresh_model(ModelSettings()), Path("m.river"))
        'trained default on 2 rows in 1.0s (2/s); progressive Accuracy 0.5000; wrote m.river'
        """
        rate = self.trained / self.seconds if self.seconds > 0 else 0.0
        text = f"trained {model.name} on {self.trained} rows in {self.seconds:.1f}s ({rate:.0f}/s)"
        if self.metric is not None:
            text += f"; progressive {type(self.metric).__name__} {self.score:.4f}"
        if self.rejected:
            left = ", ".join(f"{r} {n}" for r, n in self.rejected.most_common())
            text += f"; left out {sum(self.rejected.values())}: {left}"
        return f"{text}; wrote {out}"


def train_events(
    model: ServingModel,
    values: Iterable[bytes],
    summary: TrainSummary,
    limits: LimitSettings | None = None,
    classes: tuple[Any, ...] = (),
) -> None:
    """Predict then learn each labelled event in order; count the rows left out by reason."""
    from river import metrics

    from stream_app.core.label import check_label

    limits = limits or LimitSettings()
    if summary.metric is None:
        kind = metrics.Accuracy if model.task == "classification" else metrics.MAE
        summary.metric = kind()
    estimator, metric = model.estimator, summary.metric
    for value in values:
        try:
            event = decode_event(value, limits)
            if event.label is NO_LABEL:
                raise RejectedMessage(reasons.INVALID_LABEL, "the row has no label")
            label = check_label(event.label, model.task, classes, limits.max_string_chars)
            y = model.labels.to_model(label)
        except RejectedMessage as rejected:
            summary.rejected[rejected.reason] += 1
            continue
        x = event.features
        y_pred = estimator.predict_one(x)  # as progressive_val_score asks it
        if y_pred is not None and y_pred != {}:
            metric.update(y, y_pred)
        estimator.learn_one(x, y)
        model.feature_names.update(x)
        model.examples_learned += 1
        summary.trained += 1


def train_file(
    settings: Settings,
    source: Path,
    out: Path,
    factory: str,
    *,
    label_column: str = "label",
    id_column: str | None = None,
    fmt: str = "auto",
) -> tuple[ServingModel, TrainSummary]:
    """Train a fresh model from ``factory`` on ``source`` and write it to ``out`` as an artifact.

    ``factory`` is ``module:function``, optionally followed by its keyword arguments as JSON (the
    canonical spelling of :func:`stream_app.core.factory.factory_spec`).
    """
    from rich.console import Console
    from rich.progress import Progress

    from stream_app.registry.transfer import artifact_of
    from stream_app.tools.produce import Columns, read_items, readable_values

    path, params = parse_spec(factory)
    if ":" not in path:
        raise StreamAppError(f"--factory must be module:function; got {factory!r}")
    model = fresh_model(settings.replace(model={"factory": path, "factory_params": params}).model)
    try:
        with source.open("rb") as handle:
            total = sum(1 for line in handle if line.strip())
    except OSError as exc:
        raise StreamAppError(f"cannot read {source}: {exc.strerror}") from None
    summary = TrainSummary()
    started = time.perf_counter()
    console = Console(stderr=True)
    items = read_items(source, Columns(label=label_column, id=id_column), fmt)
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"training {model.name} ({path})", total=total)

        values = readable_values(items, lambda: progress.advance(task), summary.rejected)
        train_events(model, values, summary, settings.limits, settings.model.classes)
    summary.seconds = time.perf_counter() - started
    out.write_bytes(artifact_of(model, None, signing_key=settings.registry.signing_key))
    return model, summary
