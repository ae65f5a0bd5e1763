"""Versions from Kafka, files and imports run no code; signatures; a challenger never costs answers.

Every crafted payload here would create a marker file if unpickled plainly; each test checks the
file is absent, the previous version serves, and ``version_load_failures_total{reason}`` moved.
"""

from __future__ import annotations

import hashlib
import pathlib
import pickle
import subprocess
import sys
import time
import zlib
from pathlib import Path

import orjson
from river import linear_model

from stream_app.artifact import dumps
from stream_app.core.predict import fresh_model
from stream_app.registry.records import (
    VersionRecord,
    changelog_topic,
    chunk_key,
    record_key,
    written_by,
)
from stream_app.registry.transfer import artifact_of
from stream_app.settings import ModelSettings
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    produce,
    read_all,
    read_registry,
    wait_for,
)
from tests.integration.test_artifact import CONFIG, cli
from tests.integration.test_http import TRAIN, trained
from tests.integration.test_learning import feature_messages, sea
from tests.integration.test_versions import served_after

KEY = "a-shared-signing-key"
LOAD = "import sys; from stream_app.artifact import load; load(sys.argv[1])"
KEYED = f'{CONFIG}signing_key = "{KEY}"\n'


class Touch:
    """Pickles as ``Path.touch(target)``: a payload that creates a file when it loads."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return pathlib.Path.touch, (self.target,)


def failures(worker: WorkerProcess, reason: str) -> float:
    return worker.metrics().get(f'stream_app_version_load_failures_total{{reason="{reason}"}}', 0)


async def test_a_crafted_version_in_the_changelog_is_refused_and_the_previous_serves(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    first = worker_factory(partitions=1, extra_config=CONFIG)
    first.wait_healthy()
    good = await trained(kafka, names, first)
    marker = tmp_path / "created-by-the-blob"
    packed = zlib.compress(pickle.dumps({"format": 1, "learner": Touch(marker)}))
    bad = good + 1
    record = VersionRecord(
        "default", bad, good, time.time(), 10**6, {}, "periodic", "serving", len(packed),
        hashlib.sha256(packed).hexdigest(), 1, "stream_app.models:logistic_regression",
        "classification", **written_by(),
    )  # fmt: skip
    changelog = changelog_topic(names.app_id)
    await produce(
        kafka.bootstrap,
        changelog,
        [(chunk_key("default", bad, 0), packed), (record_key("default", bad), record.to_json())],
    )
    first.kill()

    second = worker_factory(partitions=1, extra_config=CONFIG)
    assert second.wait_healthy()["serving"] == good
    assert failures(second, "untrusted") >= 1
    assert "pathlib:Path.touch" in second.log_text()
    served = await served_after(kafka, names, "after", sea(20, seed=91))
    assert {body["model_version"] for body in served.values()} == {good}
    assert not marker.exists()


async def test_a_crafted_import_and_file_are_refused_and_serving_goes_on(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(partitions=1, extra_config=CONFIG)
    worker.wait_healthy()
    good = await trained(kafka, names, worker)
    marker = tmp_path / "created-by-the-import"
    header = {
        "model": "default", "version": 1, "task": "classification", "classes": [False, True],
        "binary": True, "examples_learned": 10, "feature_names": ["x0", "x1", "x2"],
    }  # fmt: skip
    path = tmp_path / "crafted.river"
    path.write_bytes(dumps(Touch(marker), header))

    done = cli(worker, "import", str(path))
    answer = orjson.loads(done.stdout)
    assert done.returncode == 1 and not answer["ok"]
    assert "pathlib:Path.touch" in answer["error"]
    assert failures(worker, "untrusted") >= 1

    fresh = subprocess.run(  # the artifact's own loader, in a process of its own
        [sys.executable, "-c", LOAD, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert fresh.returncode != 0 and "refused to load pathlib:Path.touch" in fresh.stderr
    served = await served_after(kafka, names, "after", sea(20, seed=92))
    assert len(served) == 20 and {body["model_version"] for body in served.values()} == {good}
    assert not marker.exists()


async def test_a_challenger_that_raises_is_dropped_and_serving_answers_every_event(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(partitions=1, extra_config=CONFIG)
    worker.wait_healthy()
    good = await trained(kafka, names, worker)
    # Numbers only: it passes the import's probe, then raises on the first string feature.
    offline = fresh_model(ModelSettings())
    offline.estimator = linear_model.LogisticRegression()
    for x, y in sea(500, seed=93):
        offline.estimator.learn_one(x, offline.labels.to_model(y))
        offline.examples_learned += 1
    path = tmp_path / "numbers-only.river"
    path.write_bytes(artifact_of(offline, None))
    done = cli(worker, "import", str(path))
    assert done.returncode == 0, done.stdout + done.stderr

    events = [({**x, "colour": "red"}, y) for x, y in sea(50, seed=94)]
    served = await served_after(kafka, names, "mixed", events)
    assert len(served) == 50 and {body["model_version"] for body in served.values()} == {good}

    async def dropped() -> list[dict[str, object]] | None:
        found = [
            body
            for body in map(orjson.loads, (r.value for r in await read_all(
                kafka.bootstrap, names.topics["model_events"])))
            if body["type"] == "challenger_dropped"
        ]  # fmt: skip
        return found or None

    events_seen = await wait_for(dropped, what="challenger_dropped")
    assert events_seen[0]["reason"] == "predict_error"
    assert worker.metrics()['stream_app_challengers_dropped_total{reason="predict_error"}'] == 1
    assert worker.wait_healthy()["shadow"] is None


async def test_a_worker_with_a_key_refuses_unsigned_versions_and_keyed_workers_agree(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    unkeyed = worker_factory(partitions=1, extra_config=CONFIG)
    unkeyed.wait_healthy()
    unsigned = await trained(kafka, names, unkeyed)
    unkeyed.kill()

    keyed = worker_factory(partitions=1, extra_config=KEYED)
    assert keyed.wait_healthy()["serving"] != unsigned  # a fresh model, not the unsigned one
    assert failures(keyed, "unsigned") >= 1
    assert KEY not in keyed.log_text()
    messages = feature_messages(sea(TRAIN, seed=95), inline=True)
    await produce(kafka.bootstrap, names.topics["features"], messages)

    async def signed_version() -> int | None:
        newest = (await read_registry(kafka.bootstrap, names.app_id)).newest("default")
        return newest.version if newest is not None and newest.version > unsigned else None

    signed = await wait_for(signed_version, what="a version written with the key")
    keyed.stop()
    other = worker_factory(partitions=1, extra_config=KEYED)
    assert other.wait_healthy()["serving"] == signed
    assert failures(other, "bad_signature") == failures(other, "unsigned") == 0
