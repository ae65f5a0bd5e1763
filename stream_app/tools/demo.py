"""``stream-app demo``: a local broker, one worker, a seeded synthetic stream and a live view.

The stream (:mod:`stream_app.tools.synth`) has a known concept change, delayed and flipped labels
and malformed messages, so that every part of the service shows itself. The view
(:mod:`stream_app.tools.view`) is a ``rich`` panel on a terminal and plain lines otherwise. At the
end (``--events`` reached, or Ctrl-C) the demo waits for the worker to answer everything it sent,
writes a report (:mod:`stream_app.tools.report`) and prints a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.errors import StreamAppError
from stream_app.kafka.security import client_kwargs
from stream_app.tools.broker import LocalKafka, die_with_parent, free_port, free_ports
from stream_app.tools.keyed import keyed_summary
from stream_app.tools.report import ReportData, quality_around, scored, task_of
from stream_app.tools.settings import DemoSettings, ToolSettings
from stream_app.tools.synth import KEY_FIELD, DemoMessage, DemoStream
from stream_app.tools.view import Tally, announce, health, scrape

__all__ = ["DemoOptions", "run_demo"]

_HEALTH_TIMEOUT_S: Final = 90.0
_POLL_S: Final = 0.2
_DRIFT: Final = "{whose}v{model_version} after {examples_seen} labels"
_PROMOTION: Final = "{whose}v{model_version} for v{previous_version}"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults are what ``make demo`` runs."""

    broker: str | None = None
    """Use this broker (``kafka://host:port``) instead of starting one."""
    events: int = 0
    """Stop after this many feature events; 0 runs until Ctrl-C."""
    rate: float | None = None
    """Events per second offered (default: ``demo.rate``)."""
    report: Path | None = None
    """Where to write the report (default: ``demo.report``, else under the data dir)."""
    keys: int = 0
    """Keyed models: the stream names one of this many users per event, the worker keeps one
    model per user (``model.key_field``); 0 is one global model."""


@dataclass
class _Run:
    """What the demo needs to know at the end."""

    changes: list[float] = field(default_factory=list)
    """Wall times at which the concept changed."""
    interrupted: bool = False


def run_demo(settings: ToolSettings, options: DemoOptions) -> int:
    """Run the demo to its end (``events``) or Ctrl-C; write the report; print a summary."""
    try:
        return _run(settings, options)
    except KeyboardInterrupt:  # before the stream started (or a second Ctrl-C): nothing to report
        print("\nstopped", flush=True)
        return 130


def _run(settings: ToolSettings, options: DemoOptions) -> int:
    """Start the broker (unless given) and a worker, stream and finish; stop them on the way out."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-app-demo-")))
        broker_url = options.broker or os.environ.get("STREAM_APP_BROKER")
        if not broker_url:
            port, controller_port = free_ports(2)
            broker = LocalKafka(
                dataclasses.replace(settings.broker, controller_port=controller_port),
                workdir / "kafka",
                port=port,
                partitions=settings.topics.partitions,
            )
            print(f"starting a local Kafka broker on {broker.bootstrap} ...", flush=True)
            broker.start()
            stack.callback(broker.stop)
            broker_url = broker.url
            print(f"broker ready on {broker.bootstrap}", flush=True)
        settings = settings.replace(app={"broker": broker_url})
        worker_id = f"{settings.app.id}-demo-{os.getpid()}"
        worker, web_port = _start_worker(
            worker_id, broker_url, workdir, settings.demo, options.keys
        )
        stack.callback(_stop, worker)
        _wait_healthy(worker, web_port)
        print(f"worker ready: http://127.0.0.1:{web_port}/metrics", flush=True)
        tally, run, since = Tally(), _Run(), time.time()
        try:
            asyncio.run(_stream(settings, worker_id, web_port, options, tally, run))
        except KeyboardInterrupt:
            run.interrupted = True
            print("\nstopping ...", flush=True)
        return _finish(settings, options, tally, run, since)
    return 1


def _finish(
    settings: ToolSettings, options: DemoOptions, tally: Tally, run: _Run, since: float
) -> int:
    """Write the report from the topics and print the summary; 0 if anything was predicted."""
    from stream_app.tools.charts import report_to

    html = options.report or Path(
        settings.demo.report or Path(settings.app.data_dir) / "demo-report.html"
    )
    png = html.with_suffix(".png")
    data, charts = report_to(settings, html, png, since=since, changes=tuple(run.changes))
    print(_summary(settings, tally, data, run, charts.metric), flush=True)
    print(f"report: {html.resolve()} (and {png.name} beside it)", flush=True)
    return 0 if data.predictions else 1


def _summary(settings: ToolSettings, tally: Tally, data: ReportData, run: _Run, metric: str) -> str:
    """Return the closing summary, one ``name: value`` line per figure."""
    drifts = [e for _, e in data.events if e.get("type") == "drift"]
    promotions = [e for _, e in data.events if e.get("type") == "promotion"]
    letters = ", ".join(f"{r}={n}" for r, n in data.dead_letters.most_common()) or "none"
    lines = [
        "summary:",
        f"  events sent: {tally.produced - tally.malformed} (and {tally.malformed} malformed "
        f"messages, {tally.labels_sent} labels)",
        f"  predictions: {len(data.predictions)}",
        f"  drift events: {len(drifts)}{_list(drifts, _DRIFT)}",
        f"  promotions: {len(promotions)}{_list(promotions, _PROMOTION)}",
        f"  dead letters: {sum(data.dead_letters.values())} ({letters})",
    ]
    keyed = keyed_summary(data)
    if keyed is not None:
        lines.append(f"  keys: {keyed.text()}")
    if run.changes:
        window = settings.report.quality_window
        points = scored(data.predictions, data.labels, task_of(data.predictions))
        before, after = quality_around(points, run.changes[0], window, metric)
        end = [p.error for p in points[-window:]]
        last = None if not end else sum(end) / len(end)
        if last is not None and metric == "accuracy":
            last = 1.0 - last
        lines.append(
            f"  {metric} around the concept change: {_fmt(before)} before, {_fmt(after)} just "
            f"after, {_fmt(last)} at the end (over {window} labelled predictions each)"
        )
    else:
        lines.append(f"  {metric}: no concept change was reached")
    return "\n".join(lines)


def _list(events: list[dict[str, Any]], pattern: str) -> str:
    """Describe model events in parentheses, or nothing.

    >>> _list([{"model_version": 0, "examples_seen": 9}], "v{model_version} at {examples_seen}")
    ' (v0 at 9)'
    >>> _list([{"model_version": 4, "examples_seen": 544, "model_key": "user-1"}], _DRIFT)
    ' (user-1 v4 after 544 labels)'
    """
    if not events:
        return ""
    return " (" + "; ".join(pattern.format_map(_fields(e)) for e in events) + ")"


def _fields(event: dict[str, Any]) -> defaultdict[str, Any]:
    """Return a model event's fields for a pattern, with ``whose``: its model key, or nothing."""
    key = event.get("model_key")
    return defaultdict(str, event, whose=f"{key} " if isinstance(key, str) else "")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _start_worker(
    worker_id: str, broker_url: str, workdir: Path, demo: DemoSettings, keys: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``stream-app worker`` in a session of its own (Ctrl-C is ours), logging to a file."""
    web_port = free_port()
    env = {
        **os.environ,
        "STREAM_APP_BROKER": broker_url,
        "STREAM_APP_ID": worker_id,
        "STREAM_APP_WEB_PORT": str(web_port),
        "STREAM_APP_DATA_DIR": str(workdir / "worker"),
        "STREAM_APP_LEARN__EARLY_LABEL_TTL_S": str(demo.early_label_ttl_s),
    }
    if keys:
        env["STREAM_APP_MODEL__KEY_FIELD"] = KEY_FIELD
    with open(workdir / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker", "-l", "info"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
    return proc, web_port


def _wait_healthy(proc: subprocess.Popen[bytes], web_port: int) -> None:
    """Wait for the worker's /health to answer 200."""
    deadline = time.monotonic() + _HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StreamAppError(f"the worker exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{web_port}/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(_POLL_S)
    raise StreamAppError(f"the worker was not healthy within {_HEALTH_TIMEOUT_S:.0f}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the worker politely, then firmly."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _stream(
    settings: ToolSettings,
    worker_id: str,
    web_port: int,
    options: DemoOptions,
    tally: Tally,
    run: _Run,
) -> None:
    """Produce the demo stream, read the outputs, show the view; at the end wait for the answers."""
    from rich.console import Console
    from rich.live import Live

    t = settings.topics
    connection = client_kwargs(settings)
    producer = AIOKafkaProducer(**connection, linger_ms=5)
    consumer = AIOKafkaConsumer(
        t.predictions,
        t.dead_letters,
        t.model_events,
        **connection,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    console = Console()
    title = f"stream_app demo · seed {settings.demo.seed} · change at {settings.demo.change_at:,}"
    if options.keys:
        drifting = min(settings.demo.drifting_keys, options.keys)
        title += f" · {options.keys} keys, {drifting} change after {settings.demo.key_change_at}"
    live = (
        Live(tally.panel(title), console=console, auto_refresh=False)
        if console.is_terminal
        else None
    )
    await producer.start()
    await consumer.start()
    tasks = [
        asyncio.create_task(_read(consumer, settings, tally, console)),
        asyncio.create_task(_view(settings, web_port, tally, live, title)),
    ]
    try:
        with live or contextlib.nullcontext():
            await _produce(producer, settings, options, tally, run)
            await _drain(settings, worker_id, web_port, tally)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


async def _produce(
    producer: AIOKafkaProducer,
    settings: ToolSettings,
    options: DemoOptions,
    tally: Tally,
    run: _Run,
) -> None:
    """Send the stream at the offered rate up to ``options.events`` (or on), then late labels."""
    s = settings.demo
    topics = {"features": settings.topics.features, "labels": settings.topics.labels}
    rate = options.rate or s.rate
    stream = DemoStream(s, options.keys)
    started = time.monotonic()
    for message in stream:
        if options.events and message.event >= options.events:
            break
        if message.change:
            run.changes.append(time.time())
        await _send(producer, topics[message.topic], message, tally)
        ahead = tally.produced / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    for message in stream.late_labels():
        await _send(producer, topics[message.topic], message, tally)
    await producer.flush()


async def _send(producer: AIOKafkaProducer, topic: str, message: DemoMessage, tally: Tally) -> None:
    """Send one message and count it (an inline label counts as a label sent)."""
    await producer.send(topic, message.value, key=message.key)
    tally.labels_sent += message.labelled
    tally.produced += message.topic == "features"
    tally.malformed += message.topic == "features" and message.event < 0


async def _drain(settings: ToolSettings, worker_id: str, web_port: int, tally: Tally) -> None:
    """Wait until the worker committed everything sent: its outputs are then in Kafka."""
    t = settings.topics
    connection = client_kwargs(settings)
    consumer = AIOKafkaConsumer(**connection)
    admin = AIOKafkaAdminClient(**connection)
    await consumer.start()
    await admin.start()
    try:
        from stream_app.kafka.read import partitions_of

        ends = await consumer.end_offsets(await partitions_of(consumer, (t.features, t.labels)))
        deadline = time.monotonic() + settings.demo.drain_timeout_s
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(f"{worker_id}-serve")
            if all(
                tp in committed and committed[tp].offset >= end for tp, end in ends.items() if end
            ):
                return
            await asyncio.sleep(_POLL_S)
        print(
            "the worker did not answer everything in time; the report shows what it did", flush=True
        )
    finally:
        await admin.close()
        await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer, settings: ToolSettings, tally: Tally, console: Any
) -> None:
    """Count predictions and dead letters; tell model events as they arrive."""
    t = settings.topics
    while True:
        batches = await consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            for record in records:
                try:
                    body = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue  # not the worker's: someone else writes to this topic
                if tp.topic == t.predictions:
                    tally.answered(body)
                elif tp.topic == t.model_events:
                    text = announce(body, tally)
                    if text is not None:
                        console.print(f"  >> {text}", highlight=False)
                else:
                    tally.dead_letters[body["reason"]] += 1
                    if body["source"]["topic"] == t.features:
                        tally.answered_features += 1


async def _view(settings: ToolSettings, web_port: int, tally: Tally, live: Any, title: str) -> None:
    """Refresh the view (or print a plain line) once per ``demo.view_every_s``."""
    while True:
        await asyncio.sleep(settings.demo.view_every_s)
        try:
            tally.metrics = await asyncio.to_thread(scrape, web_port)
            tally.canary = (await asyncio.to_thread(health, web_port)).get("canary")
        except (OSError, ValueError) as exc:  # the worker is busy or gone: keep the last figures
            tally.news.append(f"(metrics unavailable: {exc})")
        tally.tick(time.monotonic())
        if live is None:
            print(tally.line(), flush=True)
        else:
            live.update(tally.panel(title), refresh=True)
