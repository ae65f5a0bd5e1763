"""The marks of a report: model events as captioned vertical lines, and the spans of canaries.

A drift, a promotion, a rollback, a pin, a factory change or a canary's step is a vertical line on
the charts of :mod:`stream_app.tools.report`, with a caption that says what happened to which
version (:func:`marks`). A canary answers only a share of events until its rollout ends; its
answers are told apart from the incumbent's by the span of its rollout (:func:`canary_spans`), so
that each line on a chart is one model's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

from stream_app.core.canary import CANARY_DONE, CANARY_ROLLBACK, CANARY_STEP

__all__ = ["MARKED", "Mark", "canary_spans", "marks"]

MARKED: Final = (
    "drift", "promotion", "rollback", "pin", "unpin", "promote", "change", "factory_changed",
    CANARY_STEP, CANARY_ROLLBACK, CANARY_DONE,
)  # fmt: skip
"""Model-event types drawn as vertical lines (``change``: a known concept change, the demo's)."""


class Mark(NamedTuple):
    """A vertical line on the charts: when, what kind, and its caption."""

    t: float
    kind: str
    text: str


def marks(events: Iterable[tuple[float, dict[str, Any]]], changes: Iterable[float]) -> list[Mark]:
    """Captions for the model events worth a vertical line, and for known concept changes.

    >>> marks([(5.0, {"type": "drift", "model_version": 0}),
    ...        (6.0, {"type": "checkpoint", "model_version": 1}),
    ...        (7.0, {"type": "promotion", "model_version": 1, "previous_version": 0})], [4.0])
    [Mark(t=4.0, kind='change', text='concept change'), Mark(t=5.0, kind='drift', text='drift in v0'), Mark(t=7.0, kind='promotion', text='v1 serves (was v0)')]
    >>> marks([(5.0, {"type": "drift", "model_version": 2, "model_key": "user-1"})], [])
    [Mark(t=5.0, kind='drift', text='drift in user-1 v2')]
    """  # noqa: E501
    out = [Mark(t, "change", "concept change") for t in changes]
    for t, event in events:
        kind, version = event.get("type"), event.get("model_version")
        if kind not in MARKED:
            continue
        key = event.get("model_key")
        whose = f"{key} " if isinstance(key, str) else ""
        if kind == "drift":
            text = f"drift in {whose}v{version}"
        elif kind == "promotion":
            text = f"{whose}v{version} serves (was v{event.get('previous_version')})"
        elif kind == "rollback":
            text = f"rollback: v{version}"
        elif kind == "factory_changed":
            text = f"factory {event.get('action')}: {event.get('new_factory')}"
        elif kind in (CANARY_STEP, CANARY_ROLLBACK, CANARY_DONE):
            text = _canary_caption(event)
        else:
            text = f"{kind} v{version}"
        out.append(Mark(t, str(kind), text))
    return sorted(out)


def _canary_caption(event: dict[str, Any]) -> str:
    """Caption a canary event: its start, step, rollback or end, with the share.

    >>> [_canary_caption({"type": t, "model_version": 5, "from_share": f, "share": s,
    ...                   "reason": "quality_regression"})
    ...  for t, f, s in [("canary_step", 0.0, 0.05), ("canary_step", 0.05, 0.25),
    ...                  ("canary_rollback", 0.25, 0.25), ("canary_done", 0.5, 1.0)]]
    ['canary v5 at 5%', 'canary v5 5% -> 25%', 'canary v5 rolled back (quality_regression)', 'canary v5 done: serves']
    """  # noqa: E501
    kind, version = event.get("type"), event.get("model_version")
    if kind == CANARY_ROLLBACK:
        return f"canary v{version} rolled back ({event.get('reason')})"
    if kind == CANARY_DONE:
        return f"canary v{version} done: serves"
    before, share = event.get("from_share") or 0.0, event.get("share") or 0.0
    if not before:
        return f"canary v{version} at {share:.0%}"
    return f"canary v{version} {before:.0%} -> {share:.0%}"


def canary_spans(events: Iterable[tuple[float, dict[str, Any]]]) -> list[tuple[int, float]]:
    """Return (canary version, when its rollout ended) for each canary; ``inf`` while it runs.

    A version's answers before the end of its rollout were a canary's: it did not serve before
    (a challenger answers in shadow), and after ``canary_done`` it serves everything.

    >>> canary_spans([(1.0, {"type": "canary_step", "model_version": 5}),
    ...               (2.0, {"type": "canary_step", "model_version": 5}),
    ...               (3.0, {"type": "canary_rollback", "model_version": 5}),
    ...               (4.0, {"type": "canary_step", "model_version": 7})])
    [(5, 3.0), (7, inf)]
    """
    ends: dict[int, float] = {}
    for t, event in sorted(events, key=lambda item: item[0]):
        kind, version = event.get("type"), event.get("model_version")
        if not isinstance(version, int) or "model_key" in event:
            continue  # (a keyed model's version numbers are its own)
        if kind == CANARY_STEP:
            ends.setdefault(version, math.inf)
        elif kind in (CANARY_ROLLBACK, CANARY_DONE) and version in ends:
            ends[version] = min(ends[version], t)
    return list(ends.items())
