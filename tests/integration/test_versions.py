"""Model versions on the real broker: checkpoint, SIGKILL, restart from the last version."""

from __future__ import annotations

from typing import Any

import orjson

from stream_app.core.learning_log import decode_log_entries
from stream_app.core.predict import predict_one
from stream_app.registry.checkpoint import load_model
from stream_app.registry.records import changelog_topic
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    predictions_by_id,
    produce,
    read_all,
    read_registry,
    wait_consumed,
    wait_for,
)
from tests.integration.test_learning import feature_messages, sea

EVERY = 500
CONFIG = f"[guard]\nenabled = false\n[registry]\ncheckpoint_every_examples = {EVERY}\n"


async def test_restart_after_sigkill_serves_the_last_checkpoint(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    first = worker_factory(partitions=1, extra_config=CONFIG)
    first.wait_healthy()
    data = sea(2000, seed=21)
    await produce(kafka.bootstrap, names.topics["features"], feature_messages(data, inline=True))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    async def checkpointed() -> object:
        registry = await read_registry(kafka.bootstrap, names.app_id)
        newest = registry.newest("default")
        return registry if newest is not None and newest.examples_learned >= 1500 else None

    await wait_for(checkpointed, what="a checkpoint covering 1,500 examples")
    first.kill()
    registry = await read_registry(kafka.bootstrap, names.app_id)  # what the dead worker left
    last = registry.newest("default")
    assert last is not None and last.reason == "periodic" and last.chunks >= 1
    assert [r.parent for r in registry.versions("default")][1:] == [
        r.version for r in registry.versions("default")
    ][:-1]  # each checkpoint descends from the one before

    second = worker_factory(partitions=1, extra_config=CONFIG)
    health = second.wait_healthy(timeout=90)
    assert health["serving"] >= last.version  # newer if the replay below made a checkpoint due
    fresh = sea(200, seed=22)
    await produce(
        kafka.bootstrap,
        names.topics["features"],
        [
            (f"n-{i}".encode(), orjson.dumps({"id": f"n-{i}", "features": x}))
            for i, (x, _) in enumerate(fresh)
        ],
    )
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"], "n-")
    # It serves the last checkpoint plus what the learning log says was learned after it.
    restored = load_model(registry, "default", last.version).model
    assert last.learned_through is not None
    for record in await read_all(kafka.bootstrap, f"{names.app_id}-learning-log"):
        if record.offset > last.learned_through:
            for entry in decode_log_entries(record.value):
                restored.estimator.learn_one(entry.features, entry.label)
    for i, (x, _) in enumerate(fresh):
        body = served[f"n-{i}"]
        expected = predict_one(restored, x)
        assert body["model_version"] >= last.version
        assert body["prediction"] == expected.prediction
        assert all(abs(body["proba"][k] - p) <= 1e-9 for k, p in expected.proba.items())

    # Learning goes on from the restored state: the next checkpoint builds on it.
    more = sea(600, seed=23)
    await produce(
        kafka.bootstrap,
        names.topics["features"],
        [
            (f"m-{i}".encode(), orjson.dumps({"id": f"m-{i}", "features": x, "label": y}))
            for i, (x, y) in enumerate(more)
        ],
    )

    async def continued() -> object:
        newest = (await read_registry(kafka.bootstrap, names.app_id)).newest("default")
        return newest if newest is not None and newest.version > last.version else None

    following = await wait_for(continued, what="a checkpoint after the restart")
    assert following.parent == last.version
    assert following.examples_learned >= last.examples_learned + EVERY
    events = [
        orjson.loads(r.value) for r in await read_all(kafka.bootstrap, names.topics["model_events"])
    ]
    assert {"checkpoint"} <= {e["type"] for e in events}
    assert second.metrics()["stream_app_checkpoints_total"] >= 1


async def served_after(kafka: Kafka, names: Names, prefix: str, data: list) -> dict[str, dict]:
    """Produce unlabeled events ``<prefix>-i``; return their predictions by id once served."""
    messages = [
        (f"{prefix}-{i}".encode(), orjson.dumps({"id": f"{prefix}-{i}", "features": x}))
        for i, (x, _) in enumerate(data)
    ]
    await produce(kafka.bootstrap, names.topics["features"], messages)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    return await predictions_by_id(kafka.bootstrap, names.topics["predictions"], f"{prefix}-")


def same_as(served: dict[str, dict], model: object, data: list, prefix: str, version: int) -> None:
    for i, (x, _) in enumerate(data):
        body, expected = served[f"{prefix}-{i}"], predict_one(model, x)  # type: ignore[arg-type]
        assert body["model_version"] == version
        assert body["prediction"] == expected.prediction
        assert all(abs(body["proba"][k] - p) <= 1e-9 for k, p in expected.proba.items())


async def test_pin_unpin_and_rollback_by_cli_and_http(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    import subprocess
    import sys

    worker = worker_factory(partitions=1, extra_config=CONFIG)
    worker.wait_healthy()
    messages = feature_messages(sea(1800, seed=31), inline=True)
    for start in (0, 600, 1200):  # three rounds: each one passes the checkpoint threshold
        await produce(kafka.bootstrap, names.topics["features"], messages[start : start + 600])
        await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    async def three_versions() -> object:
        registry = await read_registry(kafka.bootstrap, names.app_id)
        return registry if len(registry.versions("default")) >= 3 else None

    registry = await wait_for(three_versions, what="three checkpoints")
    first, newest = registry.versions("default")[0], registry.newest("default")
    probe = sea(40, seed=32)

    # Pin through the CLI, which talks to Kafka only.
    cli = subprocess.run(
        [sys.executable, "-m", "stream_app", "models", "pin", str(first.version)],
        env=worker.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert orjson.loads(cli.stdout)["pinned"] == first.version
    first_model = load_model(registry, "default", first.version).model
    same_as(await served_after(kafka, names, "p", probe), first_model, probe, "p", first.version)
    assert worker.wait_healthy()["pinned"] == first.version

    # Unpin over HTTP: the newest version serves again.
    status, body = worker.http("/models/unpin", method="POST", body={})
    assert status == 200 and orjson.loads(body)["ok"], body
    unpinned = await served_after(kafka, names, "u", probe)
    # The live learner: the newest version plus whatever it learned since that checkpoint.
    assert {body["model_version"] for body in unpinned.values()} == {newest.version}

    # Roll back over HTTP: the first version's state comes back as a new version.
    status, body = worker.http(f"/models/{first.version}/rollback", method="POST", body={})
    answer = orjson.loads(body)
    assert status == 200 and answer["ok"] and answer["from_version"] == first.version, answer
    rolled = answer["model_version"]
    assert rolled > newest.version
    same_as(await served_after(kafka, names, "r", probe), first_model, probe, "r", rolled)

    # Unknown versions are refused, and the registry tells the story.
    status, body = worker.http("/models/999/pin", method="POST", body={})
    assert status == 409 and "not stored" in orjson.loads(body)["error"]
    listing = subprocess.run(
        [sys.executable, "-m", "stream_app", "models", "list", "--json"],
        env=worker.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    rows = {row["version"]: row for row in orjson.loads(listing.stdout)}
    assert rows[rolled]["reason"] == "rollback" and rows[rolled]["parent"] == first.version
    assert rows[rolled]["serves"] and rows[rolled]["status"] == "serving"
    status, body = worker.http(f"/models/{rolled}")
    assert status == 200 and orjson.loads(body)["reason"] == "rollback"
    kinds = [
        orjson.loads(r.value)["type"]
        for r in await read_all(kafka.bootstrap, names.topics["model_events"])
    ]
    assert {"pin", "unpin", "rollback", "checkpoint"} <= set(kinds)


async def test_two_workers_both_serve_one_learns_and_versions_propagate(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    config = (  # checkpoints by count only: none due to the clock while the test reads them
        "[guard]\nenabled = false\n[registry]\ncheckpoint_every_examples = 300\n"
        "checkpoint_every_s = 3600.0\n"
    )
    a = worker_factory(partitions=4, extra_config=config)
    a.wait_healthy()
    b = worker_factory(partitions=4, extra_config=config)
    b.wait_healthy(timeout=90)

    async def split() -> object:
        ha, hb = a.wait_healthy(), b.wait_healthy()
        both = sorted(ha["partitions"] + hb["partitions"])
        return (ha, hb) if both == [0, 1, 2, 3] and ha["partitions"] and hb["partitions"] else None

    ha, hb = await wait_for(split, what="the partitions to be split between the two workers")
    assert ha["writer"] != hb["writer"]  # exactly one writer
    writer, follower = (a, b) if ha["writer"] else (b, a)
    follower_partitions = set((hb if writer is a else ha)["partitions"])

    data = sea(1200, seed=41)
    await produce(kafka.bootstrap, names.topics["features"], feature_messages(data, inline=True))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", f"{names.app_id}-examples")

    inputs = await read_all(kafka.bootstrap, names.topics["features"])
    on_follower = sum(r.partition in follower_partitions for r in inputs)
    assert 0 < on_follower < len(data)  # both workers served a share
    w, f = writer.metrics(), follower.metrics()
    assert w["stream_app_labels_learned_total"] == len(data)  # one learner learned everything...
    assert f.get("stream_app_labels_learned_total", 0) == 0  # ...the other learned nothing itself
    assert f["stream_app_labels_forwarded_total"] == on_follower
    assert f["stream_app_predictions_total"] == on_follower

    async def newest_checkpoint() -> tuple[float, dict[str, Any]]:
        events = await read_all(kafka.bootstrap, names.topics["model_events"])
        checkpoints = [(r.timestamp / 1000, orjson.loads(r.value)) for r in events]
        serving = [
            (t, e) for t, e in checkpoints if e["type"] == "checkpoint" and e["status"] == "serving"
        ]
        assert serving, "the writer made no checkpoint"
        return serving[-1]

    # The writer checkpoints in the background after the batch that crossed 300 examples, so
    # its last checkpoint may reach model-events after the examples are consumed: read again
    # on every poll, and wait for the follower to serve whatever is newest then.
    async def propagated() -> object:
        made_at, newest = await newest_checkpoint()
        health = follower.wait_healthy()
        return (made_at, newest, health) if health["serving"] == newest["model_version"] else None

    made_at, newest, health = await wait_for(
        propagated, timeout=10, what="the follower to take the newest version"
    )
    # From the moment the writer's version record reached Kafka to the moment the other worker
    # had loaded that version and serves it.
    key = f"default/v{newest['model_version']:08d}".encode()
    changelog = await read_all(kafka.bootstrap, changelog_topic(names.app_id))
    written_at = min(r.timestamp for r in changelog if r.key == key) / 1000
    assert written_at <= made_at
    delay = health["loaded_at"] - written_at
    print(
        f"checkpoint v{newest['model_version']} reached the other worker in {delay * 1000:.0f} ms"
    )
    assert delay <= 5.0

    probe = sea(100, seed=42)
    served = await served_after(kafka, names, "q", probe)
    follower_versions = {
        body["model_version"]
        for record in await read_all(kafka.bootstrap, names.topics["predictions"])
        if record.partition in follower_partitions
        and (body := orjson.loads(record.value))["id"].startswith("q-")
    }
    assert follower_versions == {newest["model_version"]}
    assert len(served) == len(probe)


async def test_a_clean_stop_checkpoints_what_was_learned(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(partitions=1, extra_config="[guard]\nenabled = false\n")
    worker.wait_healthy()
    await produce(
        kafka.bootstrap, names.topics["features"], feature_messages(sea(100, seed=71), inline=True)
    )
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    assert (await read_registry(kafka.bootstrap, names.app_id)).newest(
        "default"
    ) is None  # none due
    assert worker.stop() == 0
    final = (await read_registry(kafka.bootstrap, names.app_id)).newest("default")
    assert final is not None, worker.log_text()[-3000:]
    assert final.reason == "shutdown" and final.examples_learned == 100


async def test_model_operations_can_require_a_token(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(partitions=1, extra_config='[web]\ntoken = "s3cret-t0ken"\n')
    worker.wait_healthy()
    status, body = worker.http("/models/unpin", method="POST", body={})
    assert status == 401 and "token" in orjson.loads(body)["error"]
    status, _ = worker.http("/models/1/pin", method="POST", body={})
    assert status == 401
    assert worker.http("/models")[0] == 200  # reading is open
    import urllib.request

    request = urllib.request.Request(
        worker.url + "/models/unpin", data=b"{}", method="POST",
        headers={"Authorization": "Bearer s3cret-t0ken"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    assert "s3cret-t0ken" not in worker.log_text()  # never logged
