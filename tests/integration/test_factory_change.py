"""A changed ``model.factory`` on the real broker: challenger, replace, keep, and refusals.

Each test first stores a logistic regression (the default factory) by running a worker on a
labelled stream and stopping it (a clean stop checkpoints), then restarts with a Hoeffding tree
configured, as a user who edits the config would.
"""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import orjson

from stream_app.registry.checkpoint import load_model
from stream_app.registry.records import Registry, VersionRecord
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    produce,
    read_all,
    read_registry,
    wait_consumed,
    wait_for,
)
from tests.integration.test_versions import same_as, served_after

LR = "stream_app.models:logistic_regression"
TREE = "stream_app.models:hoeffding_tree"
BASE = '[guard]\nenabled = false\n[drift]\npolicy = "none"\n'
FIRST_LABELS = 600
BAND = (0.25, 0.75)
"""The positive class: x inside this band. A tree splits it out; a linear model cannot."""


def band(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    """Seeded events whose label is ``x`` inside :data:`BAND` (``y`` is noise)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x, y = rng.random(), rng.random()
        out.append(({"x": x, "y": y}, BAND[0] < x < BAND[1]))
    return out


def labelled(prefix: str, data: list[tuple[dict[str, float], bool]]) -> list[tuple[bytes, bytes]]:
    return [
        (f"{prefix}-{i}".encode(), orjson.dumps({"id": f"{prefix}-{i}", "features": x, "label": y}))
        for i, (x, y) in enumerate(data)
    ]


def config(factory: str, mode: str) -> str:
    return BASE + f'[model]\nfactory = "{factory}"\non_factory_change = "{mode}"\n'


async def store_a_logistic_regression(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> tuple[Registry, VersionRecord]:
    """Serve and learn with the default factory, stop cleanly; return the registry it left."""
    worker = worker_factory(partitions=1, extra_config=BASE)
    worker.wait_healthy()
    await produce(
        kafka.bootstrap, names.topics["features"], labelled("a", band(FIRST_LABELS, seed=1))
    )
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    assert worker.stop() == 0
    registry = await read_registry(kafka.bootstrap, names.app_id)
    stored = registry.newest("default")
    assert stored is not None and stored.factory == LR, worker.log_text()[-3000:]
    return registry, stored


async def factory_events(kafka: Kafka, names: Names, count: int = 1) -> list[dict[str, Any]]:
    """Wait for ``count`` ``factory_changed`` events on model-events; return them all."""

    async def announced() -> list[dict[str, Any]] | None:
        records = await read_all(kafka.bootstrap, names.topics["model_events"])
        events = [orjson.loads(r.value) for r in records]
        found = [e for e in events if e["type"] == "factory_changed"]
        return found if len(found) >= count else None

    found: list[dict[str, Any]] = await wait_for(announced, what="a factory_changed event")
    return found


def models_list(worker: WorkerProcess) -> dict[int, dict[str, Any]]:
    """``stream-app models list --json`` as a user runs it (Kafka only), rows by version."""
    listing = subprocess.run(
        [sys.executable, "-m", "stream_app", "models", "list", "--json"],
        env=worker.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    return {row["version"]: row for row in orjson.loads(listing.stdout)}


async def test_challenger_mode_keeps_serving_until_the_new_factory_wins(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    registry, stored = await store_a_logistic_regression(kafka, names, worker_factory)
    worker = worker_factory(partitions=1, extra_config=config(TREE, "challenger"))
    health = worker.wait_healthy()
    (event,) = await factory_events(kafka, names)
    assert event["action"] == "challenger" and event["model_version"] == stored.version
    assert (event["old_factory"], event["new_factory"]) == (LR, TREE)
    challenger = event["challenger_version"]
    assert health["serving"] == stored.version and health["shadow"] == challenger

    # The stored logistic regression answers, exactly as stored, while the tree learns in shadow.
    probe = band(40, seed=2)
    old_model = load_model(registry, "default", stored.version).model
    same_as(await served_after(kafka, names, "p", probe), old_model, probe, "p", stored.version)

    # On a stream the tree fits better, it wins the duel and is promoted the normal way.
    await produce(kafka.bootstrap, names.topics["features"], labelled("b", band(3000, seed=3)))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    events = [
        orjson.loads(r.value) for r in await read_all(kafka.bootstrap, names.topics["model_events"])
    ]
    promotions = [e for e in events if e["type"] == "promotion"]
    assert len(promotions) == 1, events
    assert promotions[0]["model_version"] == challenger
    assert promotions[0]["previous_version"] == stored.version
    assert promotions[0]["accuracy_challenger"] > promotions[0]["accuracy_previous"]
    assert worker.wait_healthy()["serving"] == challenger

    assert worker.stop() == 0  # a clean stop stores the promoted tree
    rows = models_list(worker)
    serving = next(row for row in rows.values() if row["serves"])
    assert serving["factory"] == TREE and serving["configured_factory"] == TREE
    assert rows[stored.version]["factory"] == LR
    assert all("factory" in row for row in rows.values())


async def test_replace_mode_serves_a_fresh_model_and_rollback_brings_the_old_one_back(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    registry, stored = await store_a_logistic_regression(kafka, names, worker_factory)
    worker = worker_factory(partitions=1, extra_config=config(TREE, "replace"))
    worker.wait_healthy()
    (event,) = await factory_events(kafka, names)
    assert event["action"] == "replace" and event["restored_version"] == stored.version
    assert (event["old_factory"], event["new_factory"]) == (LR, TREE)
    new = event["model_version"]
    assert new > stored.version and worker.wait_healthy()["serving"] == new

    rows = models_list(worker)
    assert rows[new]["reason"] == "factory_change" and rows[new]["factory"] == TREE
    assert rows[new]["serves"] and rows[new]["parent"] is None  # a fresh model, not a descendant
    assert rows[stored.version]["factory"] == LR and rows[stored.version]["status"] == "retired"

    # The fresh tree serves at once: it has learned nothing, so it has no opinion yet.
    probe = band(40, seed=4)
    served = await served_after(kafka, names, "p", probe)
    assert {(body["model_version"], body["prediction"]) for body in served.values()} == {
        (new, None)
    }

    # Rolling back to the stored version serves the old logistic regression again.
    status, body = worker.http(f"/models/{stored.version}/rollback", method="POST", body={})
    answer = orjson.loads(body)
    assert status == 200 and answer["ok"], answer
    rolled = answer["model_version"]
    old_model = load_model(registry, "default", stored.version).model
    same_as(await served_after(kafka, names, "r", probe), old_model, probe, "r", rolled)
    assert models_list(worker)[rolled]["factory"] == LR

    # The change was acted on once: a restart keeps the operator's rollback.
    assert worker.stop() == 0
    again = worker_factory(partitions=1, extra_config=config(TREE, "replace"))
    assert again.wait_healthy()["serving"] == rolled
    assert "the change was acted on already" in again.log_text()
    same_as(await served_after(kafka, names, "s", probe), old_model, probe, "s", rolled)
    assert len(await factory_events(kafka, names)) == 1


async def test_keep_mode_warns_and_broken_factories_are_refused_at_start(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    registry, stored = await store_a_logistic_regression(kafka, names, worker_factory)
    before = [r.to_json() for r in registry.versions("default")]

    refusals = {
        "no_such_module:make_model": "cannot be imported: No module named 'no_such_module'",
        "builtins:dict": "returned a dict, not a River classifier or regressor",
        "stream_app.models:linear_regression": (
            "builds a regression model but the stored versions of model 'default' are "
            "classification models"
        ),
    }
    for factory, why in refusals.items():
        refused = worker_factory(partitions=1, extra_config=config(factory, "challenger"))
        code = refused.proc.wait(timeout=120)
        assert code != 0, refused.log_text()[-3000:]
        assert why in refused.log_text(), refused.log_text()[-3000:]
    after = await read_registry(kafka.bootstrap, names.app_id)
    assert [r.to_json() for r in after.versions("default")] == before  # untouched

    worker = worker_factory(partitions=1, extra_config=config(TREE, "keep"))
    health = worker.wait_healthy()
    assert health["serving"] == stored.version and health["shadow"] is None
    (event,) = await factory_events(kafka, names)
    assert event["action"] == "keep" and event["model_version"] == stored.version
    assert (event["old_factory"], event["new_factory"]) == (LR, TREE)
    warnings = [line for line in worker.log_text().splitlines() if "WARNING" in line]
    assert any(LR in line and TREE in line and "keep" in line for line in warnings), warnings

    probe = band(40, seed=5)
    old_model = load_model(registry, "default", stored.version).model
    same_as(await served_after(kafka, names, "p", probe), old_model, probe, "p", stored.version)
    # It keeps learning as the model it is: what it learns is stored as the old factory's.
    await produce(kafka.bootstrap, names.topics["features"], labelled("b", band(100, seed=6)))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    assert worker.stop() == 0
    rows = models_list(worker)
    newest = max(rows)
    assert newest > stored.version and rows[newest]["reason"] == "shutdown"
    assert rows[newest]["factory"] == LR and rows[newest]["configured_factory"] == TREE
