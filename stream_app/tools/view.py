"""The demo's live view: what it sent, what came back, and what the worker's /metrics say.

A :class:`Tally` is updated as messages arrive; :meth:`Tally.panel` draws it as a ``rich`` panel
for a terminal, :meth:`Tally.line` as one plain line for logs and CI. Model events are told as
they happen (:func:`announce`). A canary's state (its share, both qualities, and why it takes no
step while a share lacks labels) comes from the worker's ``/health`` (:func:`health`) and is told
by :func:`canary_text`; its steps, rollbacks and end are model events like the others.

>>> tally = Tally(started=0.0)
>>> tally.dead_letters.update({"invalid_json": 2, "noisy_label": 5})
>>> tally.letters()
'noisy_label 5 · invalid_json 2'
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from stream_app.core.canary import CANARY_DONE, CANARY_ROLLBACK, CANARY_STEP
from stream_app.tools.keyed import drift_keys
from stream_app.tools.report import percentile

__all__ = ["CANARY_EVENTS", "Tally", "announce", "canary_text", "factory_text", "health", "scrape"]

_LATENCIES_KEPT: Final = 5000
"""Recent latencies the percentiles are taken over."""
_EVENTS_SHOWN: Final = 6
_SCRAPE_TIMEOUT_S: Final = 2.0
CANARY_EVENTS: Final = (CANARY_STEP, CANARY_ROLLBACK, CANARY_DONE)
"""The model events of a canary rollout, told and counted by the live view."""


@dataclass
class Tally:
    """What the demo has seen so far."""

    started: float = field(default_factory=time.monotonic)
    produced: int = 0
    """Messages sent to the features topic (malformed ones included)."""
    malformed: int = 0
    labels_sent: int = 0
    """Labels sent: inline in events and on the labels topic."""
    predictions: int = 0
    answered_features: int = 0
    """Feature messages answered: predictions plus dead letters from the features topic."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCIES_KEPT))
    versions: set[int] = field(default_factory=set)
    serving: int | None = None
    drifts: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    factory_changes: list[dict[str, Any]] = field(default_factory=list)
    """``factory_changed`` events: the configured model was not the stored one."""
    canaries: list[dict[str, Any]] = field(default_factory=list)
    """``canary_step``, ``canary_rollback`` and ``canary_done`` events, in order."""
    canary: dict[str, Any] | None = None
    """The canary as the worker's /health last described it (None: there is none)."""
    checkpoints: int = 0
    keys: Counter[str] = field(default_factory=Counter)
    """Keyed models: predictions per model key (empty without ``model.key_field``)."""
    fallback_answers: int = 0
    """Keyed predictions answered by the fallback (``"fallback": true``): the key was young."""
    key_drifts: Counter[str] = field(default_factory=Counter)
    """Drift events per model key (``model-events`` with ``model_key``)."""
    news: deque[str] = field(default_factory=lambda: deque(maxlen=_EVENTS_SHOWN))
    metrics: dict[str, float] = field(default_factory=dict)
    """The worker's last /metrics scrape: ``{'name{label="v"}': value}``."""
    rates: tuple[float, float] = (0.0, 0.0)
    """Events/s in and predictions/s out over the last refresh."""
    _last: tuple[float, int, int] = (0.0, 0, 0)

    def tick(self, now: float) -> None:
        """Update the in/out rates from the counts since the last tick."""
        then, produced, predictions = self._last
        if then and now > then:
            span = now - then
            self.rates = (
                (self.produced - produced) / span,
                (self.predictions - predictions) / span,
            )
        self._last = (now, self.produced, self.predictions)

    def latency(self) -> tuple[float, float]:
        """Return p50 and p99 of the recent latencies, in ms.

        >>> t = Tally(); t.latencies.extend([1.0, 2.0, 3.0, 50.0]); t.latency()
        (2.0, 50.0)
        """
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0, 0.0
        return percentile(ordered, 0.5), percentile(ordered, 0.99)

    def answered(self, prediction: dict[str, Any]) -> None:
        """Count a prediction: its latency, version and, when keyed, its key and who answered.

        >>> t = Tally()
        >>> t.answered({"latency_ms": 1.0, "model_version": 0, "model_key": "u-1",
        ...             "fallback": True})
        >>> t.answered({"latency_ms": 1.0, "model_version": 2, "model_key": "u-1"})
        >>> t.predictions, dict(t.keys), t.fallback_answers, t.serving
        (2, {'u-1': 2}, 1, 2)
        """
        self.predictions += 1
        self.answered_features += 1
        self.latencies.append(prediction.get("latency_ms", 0.0))
        self.serving = prediction.get("model_version")
        key = prediction.get("model_key")
        if isinstance(key, str):
            self.keys[key] += 1
            self.fallback_answers += prediction.get("fallback") is True

    def keyed(self) -> str:
        """Describe the keyed models: how many keys, which drifted, who answered.

        >>> t = Tally(keys=Counter({"u-1": 3, "u-2": 1}), fallback_answers=1)
        >>> t.key_drifts.update(["u-2", "u-2"])
        >>> t.keyed()
        '2 keys · 1 in drift (u-2 2 times) · answers: 3 own model, 1 fallback (25%)'
        >>> Tally().keyed()
        'none'
        """
        if not self.keys:
            return "none"
        total = sum(self.keys.values())
        own = total - self.fallback_answers
        held = self.metrics.get("stream_app_model_keys")
        memory = f" ({int(held):,} in memory)" if held is not None else ""
        drifts = drift_keys(dict(self.key_drifts.most_common()))
        return (
            f"{len(self.keys):,} keys{memory} · {len(self.key_drifts)} in drift"
            f"{f' ({drifts})' if drifts else ''} · answers: {own:,} own model, "
            f"{self.fallback_answers:,} fallback ({self.fallback_answers / total:.0%})"
        )

    def letters(self) -> str:
        """Dead letters by reason, most first."""
        return " · ".join(f"{r} {n}" for r, n in self.dead_letters.most_common()) or "none"

    def quality(self) -> tuple[str, str]:
        """Return the serving and challenger quality from /metrics, as text.

        >>> Tally(metrics={'stream_app_model_quality{metric="accuracy"}': 0.91}).quality()
        ('accuracy 0.910', 'none')
        """
        serving = challenger = "n/a"
        for key, value in self.metrics.items():
            name, _, labels = key.partition("{")
            metric = labels.split('"')[1] if '"' in labels else ""
            if name == "stream_app_model_quality":
                serving = f"{metric} {value:.3f}"
            elif name == "stream_app_challenger_quality":
                challenger = f"{metric} {value:.3f}"
        if self._shadow_version() is None:
            challenger = "none"
        return serving, challenger

    def _shadow_version(self) -> int | None:
        for key, value in self.metrics.items():
            if key.startswith("stream_app_model_version{") and 'status="shadow"' in key:
                return int(value) if value >= 0 else None
        return None

    def lag(self) -> int:
        """Return the consumer lag the worker reports, summed over its input partitions."""
        return int(
            sum(v for k, v in self.metrics.items() if k.startswith("stream_app_consumer_lag"))
        )

    def learner_lag(self) -> str:
        """Describe how far behind the writer is, from its gauges (and what it shed)."""
        m = self.metrics
        examples = int(m.get("stream_app_learner_lag_examples", 0.0))
        seconds = m.get("stream_app_learner_lag_seconds", 0.0)
        shed = int(m.get("stream_app_labels_shed_total", 0.0))
        return f"{examples:,} examples, {seconds:.1f}s" + (f", {shed:,} shed" if shed else "")

    def line(self) -> str:
        """One plain status line (when the output is not a terminal)."""
        elapsed = time.monotonic() - self.started
        p50, p99 = self.latency()
        serving, challenger = self.quality()
        return (
            f"{elapsed:6.1f}s  in {self.produced} ({self.rates[0]:.0f}/s)  "
            f"out {self.predictions} ({self.rates[1]:.0f}/s)  p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
            f"v{self.serving} {serving}  challenger {challenger}  lag {self.lag()}  "
            f"learner lag {self.learner_lag()}  canary {canary_text(self.canary)}  "
            f"drifts {len(self.drifts)}  dead letters: {self.letters()}"
            + (f"  keys: {self.keyed()}" if self.keys else "")
        )

    def canary_counts(self) -> str:
        """Count the canary's steps, rollbacks and ends seen so far.

        >>> Tally(canaries=[{"type": "canary_step"}, {"type": "canary_rollback"}]).canary_counts()
        '1 canary step, 1 canary rollback, 0 canary done'
        """
        kinds = Counter(str(event.get("type")) for event in self.canaries)
        return ", ".join(f"{kinds[kind]} {kind.replace('_', ' ')}" for kind in CANARY_EVENTS)

    def panel(self, title: str) -> Any:
        """Draw the live view as a rich renderable."""
        from rich.panel import Panel
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", justify="right")
        grid.add_column()
        p50, p99 = self.latency()
        serving, challenger = self.quality()
        shadow = self._shadow_version()
        grid.add_row("in", f"{self.produced:,} events  [bold]{self.rates[0]:,.0f}/s[/]")
        grid.add_row("out", f"{self.predictions:,} predictions  [bold]{self.rates[1]:,.0f}/s[/]")
        grid.add_row("latency", f"p50 {p50:.2f} ms   p99 {p99:.2f} ms")
        grid.add_row("serving", f"v{self.serving}   {serving}")
        grid.add_row("challenger", challenger if shadow is None else f"v{shadow}   {challenger}")
        if self.canary is not None or self.canaries:
            grid.add_row("canary", canary_text(self.canary))
        grid.add_row("consumer lag", f"{self.lag():,}")
        grid.add_row("learner lag", self.learner_lag())
        grid.add_row(
            "model events",
            f"{len(self.drifts)} drift, {len(self.promotions)} promotion, "
            f"{self.checkpoints} checkpoint, {self.canary_counts()}",
        )
        if self.keys:
            grid.add_row("keyed models", self.keyed())
        if self.factory_changes:
            grid.add_row("factory", factory_text(self.factory_changes[-1]))
        grid.add_row("dead letters", self.letters())
        grid.add_row("latest", "\n".join(self.news) or "-")
        elapsed = time.monotonic() - self.started
        return Panel(grid, title=title, subtitle=f"{elapsed:.0f}s · Ctrl-C stops", expand=False)


def announce(event: dict[str, Any], tally: Tally) -> str | None:
    """Record a model event; return a sentence for people (None for a checkpoint).

    >>> announce({"type": "drift", "model_version": 0, "examples_seen": 5120,
    ...           "detector": "ADWIN"}, Tally())
    'drift: the error of v0 went up after 5,120 labels (ADWIN)'
    >>> announce({"type": "drift", "model_version": 1, "examples_seen": 90, "detector": "ADWIN",
    ...           "model_key": "user-2"}, Tally())
    "drift: the error of user-2's v1 went up after 90 labels (ADWIN)"
    """
    kind, version = event.get("type"), event.get("model_version")
    if kind == "checkpoint":
        tally.checkpoints += 1
        return None
    key = event.get("model_key")
    whose = f"{key}'s " if isinstance(key, str) else ""
    if kind == "drift":
        tally.drifts.append(event)
        if isinstance(key, str):
            tally.key_drifts[key] += 1
        text = (
            f"drift: the error of {whose}v{version} went up after "
            f"{event.get('examples_seen', 0):,} labels ({event.get('detector')})"
        )
    elif kind == "promotion":
        tally.promotions.append(event)
        text = (
            f"{whose}v{version} now serves (was v{event.get('previous_version')}, "
            f"{event.get('reason')})"
        )
    elif kind == "factory_changed":
        tally.factory_changes.append(event)
        text = factory_text(event)
    elif kind in CANARY_EVENTS:
        tally.canaries.append(event)
        text = canary_event_text(event)
    else:
        text = f"{kind}: {whose}v{version}"
    tally.news.append(f"{time.strftime('%H:%M:%S')} {text}")
    return text


def _qualities(fields: dict[str, Any]) -> str:
    """Both qualities of a canary event or status, canary first, e.g. ``accuracy 0.910 vs 0.900``.

    >>> _qualities({"accuracy_canary": 0.91, "accuracy_incumbent": None, "labels_canary": 3})
    'accuracy 0.910 vs n/a'
    >>> _qualities({"share": 0.05})
    ''
    """
    for key, value in fields.items():
        metric, _, side = key.rpartition("_")
        if side == "canary" and metric != "labels":
            theirs = fields.get(f"{metric}_incumbent")
            return f"{metric} {_figure(value)} vs {_figure(theirs)}"
    return ""


def _figure(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.3f}"


def canary_event_text(event: dict[str, Any]) -> str:
    """Tell a ``canary_step``, ``canary_rollback`` or ``canary_done`` event in a line.

    >>> canary_event_text({"type": "canary_step", "model_version": 5, "from_share": 0.0,
    ...                    "share": 0.05, "reason": "operator"})
    'canary: v5 answers 5% of events (operator), the incumbent the rest'
    >>> canary_event_text({"type": "canary_step", "model_version": 5, "from_share": 0.05,
    ...     "share": 0.25, "accuracy_canary": 0.91, "accuracy_incumbent": 0.9})
    'canary v5 steps up 5% -> 25% (accuracy 0.910 vs 0.900)'
    >>> canary_event_text({"type": "canary_rollback", "model_version": 5, "share": 0.25,
    ...     "reason": "quality_regression", "accuracy_canary": 0.7, "accuracy_incumbent": 0.9})
    'canary v5 rolled back at 25% (quality_regression; accuracy 0.700 vs 0.900): the incumbent answers everything'
    """  # noqa: E501
    kind, version = event.get("type"), event.get("model_version")
    share, qualities = event.get("share", 0.0), _qualities(event)
    if kind == CANARY_ROLLBACK:
        why = "; ".join(part for part in (str(event.get("reason")), qualities) if part)
        return (
            f"canary v{version} rolled back at {share:.0%} ({why}): "
            "the incumbent answers everything"
        )
    if kind == CANARY_DONE:
        return f"canary v{version} reached {share:.0%} and serves ({qualities})"
    before = event.get("from_share", 0.0)
    if not before:
        return (
            f"canary: v{version} answers {share:.0%} of events ({event.get('reason')}), "
            "the incumbent the rest"
        )
    return f"canary v{version} steps up {before:.0%} -> {share:.0%} ({qualities})"


def canary_text(status: dict[str, Any] | None) -> str:
    """Describe a canary as /health does (``canary``): its share, qualities, and why it waits.

    Without labels on a share a canary cannot be judged: it keeps its share and takes no step.

    >>> canary_text(None)
    'none'
    >>> canary_text({"version": 5, "share": 0.05, "accuracy_canary": None,
    ...     "accuracy_incumbent": 0.9, "waiting": "no labels yet on the canary share (0 of 500)"})
    'v5 answers 5%   accuracy n/a vs 0.900   no step: no labels yet on the canary share (0 of 500)'
    """
    if status is None:
        return "none"
    text = f"v{status.get('version')} answers {status.get('share', 0.0):.0%}"
    qualities = _qualities(status)
    if qualities:
        text += f"   {qualities}"
    if status.get("waiting"):
        text += f"   no step: {status['waiting']}"
    return text


def factory_text(event: dict[str, Any]) -> str:
    """Tell a ``factory_changed`` event in a line: both factories and what was done.

    >>> factory_text({"type": "factory_changed", "model_version": 3, "action": "challenger",
    ...               "old_factory": "m:lr", "new_factory": "m:tree", "challenger_version": 4})
    'factory changed: m:lr -> m:tree, challenger v4 learns in shadow (v3 serves)'
    """
    action, version = event.get("action"), event.get("model_version")
    done = {
        "challenger": f"challenger v{event.get('challenger_version')} learns in shadow "
        f"(v{version} serves)",
        "replace": f"v{version} replaces v{event.get('restored_version')}",
        "keep": f"v{version} keeps serving",
    }.get(str(action), str(action))
    return f"factory changed: {event.get('old_factory')} -> {event.get('new_factory')}, {done}"


def health(web_port: int) -> dict[str, Any]:
    """Read the worker's /health (its body also when it answers 503: it says why)."""
    url = f"http://127.0.0.1:{web_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=_SCRAPE_TIMEOUT_S) as response:
            raw = response.read()
    except urllib.error.HTTPError as unhealthy:
        raw = unhealthy.read()
    body = orjson.loads(raw)
    return body if isinstance(body, dict) else {}


def scrape(web_port: int) -> dict[str, float]:
    """Read the worker's /metrics into ``{'name{label="v"}': value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{web_port}/metrics"
    with urllib.request.urlopen(url, timeout=_SCRAPE_TIMEOUT_S) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
