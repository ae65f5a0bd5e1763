"""Keyed models in the demo's view and report: keys answered, keys in drift, who answered.

With ``model.key_field`` every prediction names its ``model_key`` and says ``"fallback": true``
when the fallback (the global model) answered a young key; a key's drift goes to ``model-events``
with its ``model_key``. :func:`keyed_summary` reads both; events are told apart by their ``type``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from stream_app.tools.report import ReportData, scored, task_of

__all__ = ["KeyedSummary", "drift_keys", "keyed_summary"]


@dataclass(frozen=True)
class KeyedSummary:
    """Keyed models in a report: keys answered, keys in drift, own-model and fallback answers."""

    keys: int
    drifting: dict[str, int]
    """Drift events per model key, most first."""
    own: int
    fallback: int
    own_quality: float | None
    fallback_quality: float | None
    metric: str

    def text(self) -> str:
        """One line for people.

        >>> KeyedSummary(20, {"user-1": 2}, 900, 100, 0.9, 0.75, "accuracy").text()
        '20 keys, 1 in drift (user-1 2 times); 900 own-model answers (accuracy 0.900), 100 fallback answers (accuracy 0.750)'
        """  # noqa: E501
        drifts = drift_keys(self.drifting)
        return (
            f"{self.keys:,} keys, {len(self.drifting)} in drift{f' ({drifts})' if drifts else ''}; "
            f"{self.own:,} own-model answers ({self.metric} {_text(self.own_quality)}), "
            f"{self.fallback:,} fallback answers ({self.metric} {_text(self.fallback_quality)})"
        )


def drift_keys(drifts: dict[str, int]) -> str:
    """Name the keys in drift, with how often when more than once.

    >>> drift_keys({"user-1": 3, "user-2": 1})
    'user-1 3 times, user-2'
    """
    return ", ".join(f"{k} {n} times" if n > 1 else k for k, n in drifts.items())


def _text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def keyed_summary(data: ReportData) -> KeyedSummary | None:
    """Summarise keyed models from predictions (``model_key``, ``fallback``) and model events.

    None when no prediction names a model key (one global model).

    >>> data = ReportData(predictions=[
    ...     {"id": "a", "prediction": True, "proba": {"true": 0.9}, "served_at": 1.0,
    ...      "model_key": "u-1", "fallback": True},
    ...     {"id": "b", "prediction": True, "proba": {"true": 0.9}, "served_at": 2.0,
    ...      "model_key": "u-2"}],
    ...     labels={"a": False, "b": True},
    ...     events=[(3.0, {"type": "drift", "model_version": 1, "model_key": "u-2"})])
    >>> s = keyed_summary(data); (s.keys, s.drifting, s.own, s.fallback)
    (2, {'u-2': 1}, 1, 1)
    >>> s.own_quality, s.fallback_quality
    (1.0, 0.0)
    """
    keyed = [p for p in data.predictions if isinstance(p.get("model_key"), str)]
    if not keyed:
        return None
    task = task_of(data.predictions)
    metric = "accuracy" if task == "classification" else "mae"
    own = [p for p in keyed if p.get("fallback") is not True]
    fallback = [p for p in keyed if p.get("fallback") is True]
    drifting = Counter(
        str(e["model_key"]) for _, e in data.events if e.get("type") == "drift" and "model_key" in e
    )

    def quality(predictions: list[dict[str, Any]]) -> float | None:
        errors = [p.error for p in scored(predictions, data.labels, task)]
        if not errors:
            return None
        mean = sum(errors) / len(errors)
        return 1.0 - mean if metric == "accuracy" else mean

    return KeyedSummary(
        keys=len({p["model_key"] for p in keyed}),
        drifting=dict(drifting.most_common()),
        own=len(own),
        fallback=len(fallback),
        own_quality=quality(own),
        fallback_quality=quality(fallback),
        metric=metric,
    )
