"""Draw a report: one PNG of three stacked charts, and a self-contained HTML page around it.

matplotlib draws with its Agg backend (no display needed); the HTML embeds the PNG as base64, so
the page is one file a person can mail or open anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any, Final

from stream_app.tools.keyed import KeyedSummary, keyed_summary
from stream_app.tools.report import Charts, ReportData, build, collect
from stream_app.tools.settings import ToolSettings

__all__ = ["caption_rows", "draw_png", "report_to", "write_report"]

_COLOURS: Final = {
    "change": "#222222",
    "drift": "#d62728",
    "promotion": "#2ca02c",
    "promote": "#2ca02c",
    "rollback": "#9467bd",
    "pin": "#7f7f7f",
    "unpin": "#7f7f7f",
    "factory_changed": "#ff7f0e",
    "canary_step": "#17becf",
    "canary_rollback": "#e377c2",
    "canary_done": "#2ca02c",
}
_CANARY_COLOUR: Final = "#17becf"
_FALLBACK_COLOUR: Final = "#8c564b"
_STYLES: Final = {"change": ":", "drift": "--", "canary_step": "-."}
_SIZE_IN: Final = (12.0, 9.0)
_DPI: Final = 110
_CAPTION_PT: Final = 8.5
_CHAR_WIDTH: Final = 0.6
"""An average character's width, in font sizes (to keep captions apart)."""
_ROW_HEIGHT: Final = 0.07
"""Height of a row of captions, in fractions of the chart."""


def draw_png(charts: Charts, title: str) -> bytes:
    """Draw quality, latency and throughput over time with the model events marked; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    quality, latency, throughput = figure.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1, 1]}
    )
    figure.suptitle(title, fontsize=13)
    metric = "accuracy" if charts.metric == "accuracy" else "MAE (lower is better)"
    if charts.serving:
        serving = "keys' own models" if charts.fallback else "serving model"
        quality.plot(*zip(*charts.serving, strict=True), color="#1f77b4", label=serving)
    if charts.fallback:
        quality.plot(
            *zip(*charts.fallback, strict=True),
            color=_FALLBACK_COLOUR,
            linestyle=":",
            label="fallback (the global model, for young keys)",
        )
    if charts.shadow:
        quality.plot(
            *zip(*charts.shadow, strict=True),
            color="#ff7f0e",
            linestyle="--",
            label="challenger (shadow)",
        )
    if charts.canary:
        quality.plot(
            *zip(*charts.canary, strict=True),
            color=_CANARY_COLOUR,
            linestyle="-.",
            label="canary (on the share it answered)",
        )
    quality.set_ylabel(f"rolling {metric}")
    quality.set_title(
        f"Quality of the answers against their labels "
        f"({charts.metric} over the last {charts.window} labelled predictions)"
    )
    if charts.metric == "accuracy":
        quality.set_ylim(-0.02, 1.05)
    if charts.latency:
        xs, p50, p99 = zip(*charts.latency, strict=True)
        latency.plot(xs, p50, color="#1f77b4", marker=".", label="p50")
        latency.plot(xs, p99, color="#d62728", marker=".", label="p99")
        latency.set_yscale("log")
        latency.legend(loc="upper right", fontsize=9)
    latency.set_ylabel("latency (ms)")
    latency.set_title("Latency inside the worker (latency_ms of each prediction)")
    if charts.throughput:
        latency_x, rate = zip(*charts.throughput, strict=True)
        throughput.fill_between(latency_x, rate, step="mid", alpha=0.4, color="#1f77b4")
        throughput.step(latency_x, rate, where="mid", color="#1f77b4")
    throughput.set_ylabel("predictions / s")
    throughput.set_title("Throughput")
    throughput.set_xlabel("seconds since the first prediction")
    for axes in (quality, latency, throughput):
        axes.grid(alpha=0.3)
        _draw_marks(axes, charts, captions=axes is quality)
    handles, labels = quality.get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    if seen:
        quality.legend(seen.values(), seen.keys(), loc="lower left", fontsize=9)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _draw_marks(axes: Any, charts: Charts, *, captions: bool) -> None:
    """Vertical lines for model events; captions (and legend entries) on the top chart only."""
    from matplotlib.transforms import blended_transform_factory

    top = blended_transform_factory(axes.transData, axes.transAxes)
    left, right = axes.get_xlim()
    char = _CAPTION_PT * _CHAR_WIDTH * _DPI / 72 / max(axes.get_window_extent().width, 1.0)
    spans = [((m.t - left) / (right - left or 1.0), (len(m.text) + 1) * char) for m in charts.marks]
    for mark, row in zip(charts.marks, caption_rows(spans), strict=True):
        colour = _COLOURS.get(mark.kind, "#7f7f7f")
        axes.axvline(
            mark.t,
            color=colour,
            linestyle=_STYLES.get(mark.kind, "-"),
            linewidth=1.3,
            label=_legend_name(mark.kind) if captions else None,
        )
        if captions:
            axes.text(
                mark.t,
                0.98 - _ROW_HEIGHT * row,
                f" {mark.text}",
                transform=top,
                color=colour,
                fontsize=_CAPTION_PT,
                va="top",
                ha="left",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
            )


def caption_rows(spans: list[tuple[float, float]]) -> list[int]:
    """Give each caption (left edge, width; in axes fractions, in order) the first row it fits in.

    >>> caption_rows([(0.1, 0.2), (0.2, 0.1), (0.35, 0.1), (0.5, 0.1)])
    [0, 1, 0, 0]
    """
    ends: list[float] = []
    rows = []
    for start, width in spans:
        row = next((i for i, end in enumerate(ends) if end <= start), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = start + width
        rows.append(row)
    return rows


def _legend_name(kind: str) -> str:
    """Name a kind of mark in the legend.

    >>> _legend_name("change"), _legend_name("drift")
    ('known concept change', 'drift detected')
    """
    return {
        "change": "known concept change",
        "drift": "drift detected",
        "promotion": "promotion",
        "promote": "promotion",
        "factory_changed": "model factory changed",
        "canary_step": "canary step",
        "canary_rollback": "canary rolled back",
        "canary_done": "canary done",
    }.get(kind, kind)


def report_to(
    settings: ToolSettings,
    out: Path,
    png: Path,
    since: float = 0.0,
    changes: tuple[float, ...] = (),
) -> tuple[ReportData, Charts]:
    """Read the topics, draw, and write ``out`` (HTML) and ``png``; return what was drawn."""
    data = collect(settings, since)
    data.changes.extend(changes)
    charts = build(data, settings.report)
    kinds = [event.get("type") for _, event in data.events]
    title = (
        f"stream_app: model {settings.model.name!r} on topic {settings.topics.features!r}: "
        f"{charts.counts['predictions']:,} predictions, {kinds.count('drift')} drift, "
        f"{kinds.count('promotion')} promotion, {_canary_count(kinds)}"
        f"{charts.counts['dead letters']:,} dead letters"
    )
    keyed = keyed_summary(data)
    if keyed is not None:
        title += f", {keyed.keys:,} keys ({len(keyed.drifting)} in drift)"
    write_report(data, charts, out, png, title)
    return data, charts


def _canary_count(kinds: list[Any]) -> str:
    """Count canary steps and rollbacks for the title, or nothing when there was no canary.

    >>> _canary_count(["canary_step", "canary_step", "canary_rollback"]), _canary_count(["drift"])
    ('2 canary step, 1 canary rollback, ', '')
    """
    steps, rollbacks = kinds.count("canary_step"), kinds.count("canary_rollback")
    if not steps and not rollbacks:
        return ""
    return f"{steps} canary step, {rollbacks} canary rollback, "


def write_report(data: ReportData, charts: Charts, out: Path, png: Path, title: str) -> None:
    """Write the PNG, and an HTML page embedding it with tables of model events and dead letters."""
    image = draw_png(charts, title)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(image)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(data, charts, image, title), encoding="utf-8")


def _page(data: ReportData, charts: Charts, image: bytes, title: str) -> str:
    """Return the HTML page: counts, the picture, model events and dead letters by reason."""
    esc = html.escape
    counts = ", ".join(f"{n:,} {what}" for what, n in charts.counts.items())
    events = "".join(
        f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(t))}</td>"
        f"<td>{t - charts.t0:+.1f}s</td><td>{esc(str(e.get('type')))}</td>"
        f"<td>{esc(str(e.get('model')))} v{esc(str(e.get('model_version')))}</td>"
        f"<td>{esc(_details(e))}</td></tr>"
        for t, e in data.events
    )
    letters = "".join(
        f"<tr><td>{esc(reason)}</td><td>{n:,}</td></tr>"
        for reason, n in data.dead_letters.most_common()
    )
    keyed = _keyed_section(keyed_summary(data))
    encoded = base64.b64encode(image).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px}}
th{{background:#eee;text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{esc(title)}</h1>
<p>{esc(counts)}. Quality is {esc(charts.metric)} over a rolling window of labelled predictions.</p>
<img alt="quality, latency and throughput over time" src="data:image/png;base64,{encoded}">
{keyed}<h2>Model events</h2>
<table><tr><th>time</th><th>since start</th><th>type</th><th>model</th><th>details</th></tr>
{events or '<tr><td colspan="5">none</td></tr>'}</table>
<h2>Dead letters by reason</h2>
<table><tr><th>reason</th><th>messages</th></tr>
{letters or '<tr><td colspan="2">none</td></tr>'}</table>
</body></html>
"""


def _keyed_section(summary: KeyedSummary | None) -> str:
    """Return the page's section on keyed models (nothing with one global model).

    >>> _keyed_section(None)
    ''
    >>> "<td>user-1</td><td>2</td>" in _keyed_section(
    ...     KeyedSummary(3, {"user-1": 2}, 90, 10, 0.9, 0.7, "accuracy"))
    True
    """
    if summary is None:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{n}</td></tr>" for key, n in summary.drifting.items()
    )
    none = '<tr><td colspan="2">none</td></tr>'
    return (
        f"<h2>Keyed models</h2>\n<p>{html.escape(summary.text())}.</p>\n"
        "<table><tr><th>key in drift</th><th>drift events</th></tr>\n"
        f"{rows or none}</table>\n"
    )


def _details(event: dict[str, Any]) -> str:
    """Return the fields of a model event beyond type, model and version, as ``k=v``.

    >>> _details({"type": "promotion", "model": "m", "model_version": 1, "accuracy": 0.154000001})
    'accuracy=0.154'
    """
    rest = {k: v for k, v in event.items() if k not in ("type", "model", "model_version")}
    return " ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in rest.items())
