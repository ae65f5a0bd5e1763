"""Model versions on the real broker: checkpoint, SIGKILL, restart from the last version."""

from __future__ import annotations

import orjson

from stream_app.checkpoint import load_model
from stream_app.predict import predict_one
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import produce, read_all, read_registry, wait_consumed, wait_for
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
    assert health["serving"] == last.version
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
    served = {
        body["id"]: body
        for body in (
            orjson.loads(r.value)
            for r in await read_all(kafka.bootstrap, names.topics["predictions"])
        )
        if body["id"].startswith("n-")
    }
    restored = load_model(registry, "default", last.version).model
    for i, (x, _) in enumerate(fresh):
        body = served[f"n-{i}"]
        expected = predict_one(restored, x)
        assert body["model_version"] == last.version
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
