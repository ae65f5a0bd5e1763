"""Export a version to a file and load it without Kafka code; import one, prove it, promote it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_app.artifact import load
from stream_app.core.predict import fresh_model
from stream_app.registry.transfer import artifact_of
from stream_app.settings import ModelSettings
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import WorkerProcess, predictions_by_id, read_registry
from tests.integration.test_http import TRAIN, trained
from tests.integration.test_learning import sea
from tests.integration.test_versions import served_after

CONFIG = (
    f'[guard]\nenabled = false\n[drift]\npolicy = "none"\n'
    f"[registry]\ncheckpoint_every_examples = {TRAIN}\n"
)

# Runs in a fresh interpreter: load the artifact with River and the standard library only.
LOAD = """
import json, sys
from stream_app.artifact import load
artifact = load(sys.argv[1])
rows = json.loads(sys.stdin.read())
answers = [artifact.predict_one(x) for x in rows]
kafka = ("aiokafka", "faust", "mode", "orjson")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in kafka)
print(json.dumps({"answers": answers, "kafka_modules": loaded, "version": artifact.version}))
"""


def cli(worker: WorkerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_app", "models", *args],
        env=worker.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_an_exported_version_answers_like_the_stream_in_a_process_without_kafka(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(extra_config=CONFIG)
    worker.wait_healthy()
    version = await trained(kafka, names, worker)
    probe = sea(100, seed=71)
    served = await served_after(kafka, names, "x", probe)

    out = tmp_path / "model.river"
    done = cli(worker, "export", str(version), "--out", str(out))
    assert done.returncode == 0, done.stderr
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD, str(out)],
        input=orjson.dumps([x for x, _ in probe]).decode(),
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result = orjson.loads(loaded.stdout)
    assert result["kafka_modules"] == [] and result["version"] == version
    for i, (prediction, proba) in enumerate(result["answers"]):
        body = served[f"x-{i}"]
        assert body["model_version"] == version
        assert (prediction, proba) == (body["prediction"], body["proba"])

    header = load(out).header
    assert header["record"]["version"] == version and header["task"] == "classification"
    assert header["feature_names"] == ["x0", "x1", "x2"] and header["examples_learned"] == TRAIN
    assert cli(worker, "export", "999", "--out", str(out)).returncode == 1


async def test_an_imported_model_answers_in_shadow_then_serves_once_promoted(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(extra_config=CONFIG)
    worker.wait_healthy()
    before = await trained(kafka, names, worker)

    # A model trained offline (another estimator), written as an artifact.
    offline = fresh_model(ModelSettings(factory="stream_app.models:hoeffding_tree"))
    for x, y in sea(3000, seed=72):
        offline.estimator.learn_one(x, offline.labels.to_model(y))
        offline.examples_learned += 1
    path = tmp_path / "offline.river"
    path.write_bytes(artifact_of(offline, None, factory="stream_app.models:hoeffding_tree"))
    artifact = load(path)

    done = cli(worker, "import", str(path))
    assert done.returncode == 0, done.stderr
    answer = orjson.loads(done.stdout)
    imported = answer["model_version"]
    assert answer["ok"] and answer["type"] == "import" and imported > before
    record = (await read_registry(kafka.bootstrap, names.app_id)).record("default", imported)
    assert record is not None
    assert (record.reason, record.status, record.factory) == (
        "import",
        "shadow",
        "stream_app.models:hoeffding_tree",
    )

    def agree(bodies: dict[str, dict[str, Any]], prefix: str, data: list, version: int) -> None:
        for i, (x, _) in enumerate(data):
            body = bodies[f"{prefix}-{i}"]
            assert body["model_version"] == version
            assert (body["prediction"], body["proba"]) == artifact.predict_one(x)

    probe = sea(60, seed=73)
    served = await served_after(kafka, names, "s", probe)  # the stream still serves `before`
    assert {body["model_version"] for body in served.values()} == {before}
    shadow = await predictions_by_id(kafka.bootstrap, names.topics["predictions_shadow"], "s-")
    agree(shadow, "s", probe, imported)
    assert worker.wait_healthy()["shadow"] == imported

    done = cli(worker, "promote", str(imported))
    assert done.returncode == 0, done.stderr
    promoted = orjson.loads(done.stdout)
    assert promoted["ok"] and promoted["from_version"] == imported
    after = await served_after(kafka, names, "p", probe)
    agree(after, "p", probe, promoted["model_version"])
    registry = await read_registry(kafka.bootstrap, names.app_id)
    serving = registry.record("default", promoted["model_version"])
    assert serving is not None and serving.status == "serving" and serving.reason == "promotion"
    assert cli(worker, "import", str(tmp_path / "missing.river")).returncode != 0
