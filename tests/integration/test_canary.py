"""Canary rollout on a real broker: a version trained offline answers a share, steps or rolls back.

The versions rolled out are made as a user makes them: ``stream-app train`` on a file of history,
then ``stream-app models import``. A better one (true labels) steps to 1.0 and serves; a worse one
(every label flipped) is rolled back at its first judgement. Shares are counted on the
``predictions`` topic over 5,000 events, and ``POST /predict`` answers those ids as the stream did.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_app.core.canary import CANARY_DONE, CANARY_ROLLBACK, CANARY_STEP
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    produce,
    read_all,
    wait_consumed,
    wait_for,
)
from tests.integration.test_artifact import cli
from tests.integration.test_http import post, same_answer
from tests.integration.test_learning import feature_messages, sea
from tests.integration.test_versions import served_after

WINDOW = 50
CONFIG = (
    '[guard]\nenabled = false\n[drift]\npolicy = "none"\n'
    "[registry]\ncheckpoint_every_examples = 1000000\ncheckpoint_every_s = 3600.0\n"
    f"[rollout]\nwindow = {WINDOW}\nmax_regression = 0.02\n"
)
CANARY_KINDS = (CANARY_STEP, CANARY_ROLLBACK, CANARY_DONE, "promotion")


def trained_file(tmp_path: Path, worker: WorkerProcess, flip: bool) -> int:
    """``stream-app train`` on 3,000 rows of history (labels flipped if asked), then import it."""
    history = tmp_path / ("flipped.jsonl" if flip else "history.jsonl")
    with history.open("wb") as out:
        for i, (x, y) in enumerate(sea(3000, seed=91)):
            out.write(orjson.dumps({"id": f"h-{i}", "features": x, "label": y != flip}) + b"\n")
    artifact = tmp_path / "model.river"
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "train", str(history), "--out", str(artifact),
         "--factory", "stream_app.models:logistic_regression"],
        env=worker.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "trained default on 3000 rows" in done.stdout, done.stderr
    imported = cli(worker, "import", str(artifact))
    assert imported.returncode == 0, imported.stderr
    return int(orjson.loads(imported.stdout)["model_version"])


async def warm_incumbent(kafka: Kafka, names: Names) -> None:
    """The serving model learns 300 labelled events, so that it answers."""
    await produce(
        kafka.bootstrap,
        names.topics["features"],
        [(b"w" + k, v.replace(b'"e-', b'"we-')) for k, v in feature_messages(sea(300, 90), True)],
    )
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])


async def canary_events(kafka: Kafka, names: Names) -> list[dict[str, Any]]:
    records = await read_all(kafka.bootstrap, names.topics["model_events"])
    events = [orjson.loads(r.value) for r in records]
    return [e for e in events if e["type"] in CANARY_KINDS]


async def label_stream(kafka: Kafka, names: Names, prefix: str, n: int) -> None:
    messages = [
        (f"{prefix}-{i}".encode(), orjson.dumps({"id": f"{prefix}-{i}", "features": x, "label": y}))
        for i, (x, y) in enumerate(sea(n, seed=93))
    ]
    await produce(kafka.bootstrap, names.topics["features"], messages)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])


async def test_a_better_canary_holds_its_share_without_labels_then_steps_to_one(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(partitions=1, extra_config=CONFIG)
    worker.wait_healthy()
    await warm_incumbent(kafka, names)
    imported = trained_file(tmp_path, worker, flip=False)

    refused = cli(worker, "canary", "999", "--share", "0.25")
    assert refused.returncode == 1 and "999 is not stored" in orjson.loads(refused.stdout)["error"]
    started = cli(worker, "canary", str(imported), "--share", "0.25")
    assert started.returncode == 0, started.stderr
    answer = orjson.loads(started.stdout)
    canary = answer["model_version"]
    assert answer["ok"] and answer["canary"]["share"] == 0.25
    incumbent = worker.wait_healthy()["serving"]
    assert canary != incumbent

    # Without labels: the share holds over 5,000 events, nothing steps, and /health says why.
    unlabelled = sea(5000, seed=92)
    served = await served_after(kafka, names, "s", unlabelled)
    versions = [body["model_version"] for body in served.values()]
    assert len(versions) == 5000 and set(versions) == {canary, incumbent}
    assert abs(versions.count(canary) / 5000 - 0.25) <= 0.03
    status = worker.wait_healthy()["canary"]
    assert status["share"] == 0.25 and status["waiting"].startswith("no labels yet")
    assert [e["type"] for e in await canary_events(kafka, names)] == [CANARY_STEP]

    # Over HTTP an id gets what the stream gave it: the canary's answer on its share.
    probe = [{"id": f"s-{i}", "features": x} for i, (x, _) in enumerate(unlabelled[:500])]
    code, batch = post(worker, "/predict/batch", orjson.dumps({"events": probe}))
    singles = [post(worker, "/predict", orjson.dumps(event)) for event in probe[:40]]
    assert code == 200 and all(code == 200 for code, _ in singles)
    answers = [*batch["predictions"], *(answer for _, answer in singles)]
    for answer in answers:  # a batch call may differ from one-by-one in the last bit
        assert same_answer(answer, served[answer["id"]], tolerance=1e-9), answer["id"]
    assert {answer["model_version"] for answer in answers} == {canary, incumbent}

    # With labels it is judged on its share and steps up to 1.0, then serves.
    await label_stream(kafka, names, "l", 2000)

    async def done() -> list[dict[str, Any]] | None:
        events = await canary_events(kafka, names)
        return events if any(e["type"] == "promotion" for e in events) else None

    events = await wait_for(done, what="the canary to finish")
    assert [(e["type"], e["share"]) for e in events if e["type"] != "promotion"] == [
        (CANARY_STEP, 0.25),
        (CANARY_STEP, 0.5),
        (CANARY_DONE, 1.0),
    ]
    step = events[1]
    assert step["from_share"] == 0.25 and step["model_version"] == canary
    assert step["accuracy_canary"] >= step["accuracy_incumbent"] - 0.02
    after = await served_after(kafka, names, "a", sea(200, seed=94))
    assert {body["model_version"] for body in after.values()} == {canary}


async def test_a_worse_canary_is_rolled_back_without_a_step_and_abort_returns(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(partitions=1, extra_config=CONFIG)
    worker.wait_healthy()
    await warm_incumbent(kafka, names)
    flipped = trained_file(tmp_path, worker, flip=True)

    status, answer = post(worker, "/models/canary", orjson.dumps({"version": 999, "share": 0.1}))
    assert status == 409 and "999 is not stored" in answer["error"]
    status, answer = post(worker, "/models/canary", orjson.dumps({"abort": True}))
    assert status == 409 and "no canary" in answer["error"]

    status, answer = post(
        worker, "/models/canary", orjson.dumps({"version": flipped, "share": 0.05})
    )
    assert status == 200 and answer["canary"]["share"] == 0.05, answer
    aborted = cli(worker, "canary", "--abort")
    assert aborted.returncode == 0, aborted.stderr
    assert worker.wait_healthy()["canary"] is None

    status, answer = post(
        worker, "/models/canary", orjson.dumps({"version": flipped, "share": 0.05})
    )
    assert status == 200, answer
    canary = answer["model_version"]
    await label_stream(kafka, names, "l", 3000)

    async def rolled_back() -> list[dict[str, Any]] | None:
        events = await canary_events(kafka, names)
        return events if events[-1]["type"] == CANARY_ROLLBACK and len(events) == 4 else None

    events = await wait_for(rolled_back, what="the regression rollback")
    assert [(e["type"], e.get("reason")) for e in events] == [
        (CANARY_STEP, "operator"),
        (CANARY_ROLLBACK, "abort"),
        (CANARY_STEP, "operator"),
        (CANARY_ROLLBACK, "quality_regression"),
    ]
    last = events[-1]
    assert last["share"] == 0.05 and last["model_version"] == canary
    assert last["accuracy_canary"] < last["accuracy_incumbent"] - 0.02
    after = await served_after(kafka, names, "a", sea(200, seed=94))
    assert canary not in {body["model_version"] for body in after.values()}
    assert worker.wait_healthy()["canary"] is None
