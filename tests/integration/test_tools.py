"""The user's tools on a real broker: produce and tail round trips, and the whole demo."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
from matplotlib import image

from stream_app.core.messages import decode_dead_letter
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WAIT_S,
    WorkerProcess,
    predictions_by_id,
    read_all,
    wait_for,
)

DEMO_TIMEOUT_S = 600.0


def cli(
    env: dict[str, str], *args: str, timeout: float = WAIT_S
) -> subprocess.CompletedProcess[str]:
    """Run ``stream-app ARGS`` as a user would, with the worker's settings in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def round_trip(
    kafka: Kafka, worker: WorkerProcess, path: Path, new: set[str], before: set[str]
) -> None:
    """Produce ``path``, await a prediction for each new id, and see tail print all of them."""
    sent = await asyncio.to_thread(cli, worker.env, "produce", str(path), "--rate", "0")
    assert sent.returncode == 0, sent.stderr
    assert f"sent {len(new)} messages" in sent.stdout
    ids = new | before

    async def all_predicted() -> bool:
        got = await predictions_by_id(kafka.bootstrap, worker.topics["predictions"])
        return ids <= set(got)

    await wait_for(all_predicted, what=f"predictions for {path.name}")
    count = len(await read_all(kafka.bootstrap, worker.topics["predictions"]))
    args = ("tail", "predictions", "--from-beginning", "-n", str(count), "--timeout", "20")
    tail = await asyncio.to_thread(cli, worker.env, *args)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == count
    assert ids <= {line.split()[0] for line in lines}
    assert all(re.search(r" v\d+ ", line) for line in lines)
    raw = await asyncio.to_thread(cli, worker.env, *args, "--json")
    assert ids <= {orjson.loads(line)["id"] for line in raw.stdout.splitlines()}


async def test_produce_and_tail_round_trip_jsonl_and_csv(
    kafka: Kafka, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory()
    worker.wait_healthy()

    jsonl = tmp_path / "clicks.jsonl"
    events = [{"id": f"j-{i}", "features": {"x": i / 10, "colour": "red"}} for i in range(40)]
    flat = [{"x": i / 10, "colour": "blue", "label": i % 2 == 0} for i in range(10)]
    lines = [orjson.dumps(e).decode() for e in events + flat] + ["{not json"]
    jsonl.write_text("\n".join(lines) + "\n")
    jsonl_ids = {e["id"] for e in events} | {f"clicks-{41 + i}" for i in range(10)}
    await round_trip(kafka, worker, jsonl, jsonl_ids, set())

    csv_file = tmp_path / "orders.csv"
    rows = ["amount,city,label"] + [
        f"{i * 1.5},{'Oslo' if i % 3 else 'Rome'},{i % 2}" for i in range(30)
    ]
    csv_file.write_text("\n".join(rows) + "\n")
    csv_ids = {f"orders-{line}" for line in range(2, 32)}
    await round_trip(kafka, worker, csv_file, csv_ids, jsonl_ids)

    # The unparsable line was reported and skipped; with --raw it goes to dead letters.
    raw = await asyncio.to_thread(cli, worker.env, "produce", str(jsonl), "--raw")
    assert "1 of them unparsed (--raw)" in raw.stdout

    async def dead_lettered() -> list[bytes]:
        letters = await read_all(kafka.bootstrap, worker.topics["dead_letters"])
        return [r.value for r in letters if decode_dead_letter(r.value)["original"] == b"{not json"]

    await wait_for(dead_lettered, what="the raw line's dead letter")
    args = ("tail", "dead-letters", "--from-beginning", "--timeout", "5")
    tail = await asyncio.to_thread(cli, worker.env, *args)
    assert any(
        line.startswith("invalid_json:") and "b'{not json'" in line
        for line in tail.stdout.splitlines()
    )


def test_demo_3000_events_on_the_session_broker(kafka: Kafka, names: Names, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    env.update({f"STREAM_APP_TOPICS__{key.upper()}": topic for key, topic in names.topics.items()})
    env.update(STREAM_APP_ID=names.app_id, STREAM_APP_DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    report = tmp_path / "demo" / "report.html"
    args = ("demo", "--events", "3000", "--broker", f"kafka://{kafka.bootstrap}")
    done = cli(env, *args, "--report", str(report), timeout=DEMO_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    summary = output[output.index("summary:") :]
    figures = dict(re.findall(r"^  ([a-z ]+): (\d+)", summary, flags=re.MULTILINE))
    assert int(figures["predictions"]) > 0
    assert int(figures["drift events"]) >= 1
    reasons = dict(
        re.findall(r"([a-z0-9_]+)=(\d+)", summary.split("dead letters:")[1].splitlines()[0])
    )
    assert int(figures["dead letters"]) == sum(int(n) for n in reasons.values()) > 0
    assert {"invalid_json", "label_without_event"} <= set(reasons)
    assert report.is_file() and report.read_text().startswith("<!doctype html>")
    assert "data:image/png;base64," in report.read_text()
    height, width, _ = image.imread(report.with_suffix(".png")).shape
    assert height > 100 and width > 100


def test_demo_with_keys_shows_keys_and_who_answered(
    kafka: Kafka, names: Names, tmp_path: Path
) -> None:
    """``demo --keys 20``: a worker keyed by user; the summary, the view and the report say so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    env.update({f"STREAM_APP_TOPICS__{key.upper()}": topic for key, topic in names.topics.items()})
    env.update(STREAM_APP_ID=names.app_id, STREAM_APP_DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    env.update(STREAM_APP_DEMO__VIEW_EVERY_S="0.2")  # (a short run: show the view a few times)
    report = tmp_path / "demo" / "report.html"
    args = ("demo", "--keys", "20", "--events", "1500", "--rate", "1000")
    broker = ("--broker", f"kafka://{kafka.bootstrap}")
    done = cli(env, *args, *broker, "--report", str(report), timeout=DEMO_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    summary = output[output.index("summary:") :]
    found = re.search(
        r"keys: (\d+) keys, (\d+) in drift.*; ([\d,]+) own-model answers .*, ([\d,]+) fallback",
        summary,
    )
    assert found is not None, summary
    keys, _, own, fallback = (int(n.replace(",", "")) for n in found.groups())
    assert keys == 20
    assert own > 0 and fallback > 0  # 75 events a key: young keys, then their own
    view = (
        r"keys: \d+ keys \(\d+ in memory\) · \d+ in drift.* answers: [\d,]+ own model, [\d,]+ fallb"
    )
    assert re.search(view, output), output  # the live view's plain lines
    predictions = asyncio.run(read_all(kafka.bootstrap, names.topics["predictions"]))
    bodies = [orjson.loads(r.value) for r in predictions]
    assert bodies and all(b["model_key"].startswith("user-") for b in bodies)
    assert sum(b.get("fallback") is True for b in bodies) == fallback
    assert own + fallback == len(bodies)
    page = report.read_text()
    assert "<h2>Keyed models</h2>" in page and "20 keys" in page
