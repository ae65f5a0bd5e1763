"""Operations per key on the real broker: keys, show, rollback, reset and export of one key.

A rollback or a reset of one key must reach the worker that owns it, change that key's very next
prediction (to River's own loop over the events its version had learned, or to a fresh model's
answer) and no other key's, and be stored, so that a restart serves it too. Over HTTP a worker
answers ``POST /predict`` only for the keys it owns, and 421 with the owner's address otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from stream_app import artifact
from stream_app.core.route import home_partition
from stream_app.models import logistic_regression
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    predictions_by_id,
    produce,
    wait_consumed,
    wait_for,
)
from tests.integration.test_keyed import KEYED, PARTITIONS, Event, events, traffic
from tests.integration.test_openapi import checker
from tests.integration.test_scaling import partitions

EVERY = 10
"""registry.key_checkpoint_every_examples: a version of each key after 10, 20 and 30 labels."""
OPS = KEYED + f"[registry]\nkey_checkpoint_every_examples = {EVERY}\n"
TOLERANCE = 1e-9


def river(rounds: list[list[Event]], key: str, learned: int) -> Any:
    """River's own model of ``key`` after its first ``learned`` events (predict-then-learn)."""
    model = logistic_regression()
    seen = [(x, y) for batch in rounds for _, k, x, y in batch if k == key][:learned]
    for x, y in seen:
        model.learn_one(x, y)
    return model


def probe(keys: int, prefix: str) -> list[Event]:
    """One unlabelled event per key (the probes learn nothing): fixed features."""
    return [
        (f"{prefix}-{k}", f"user-{k}", {"x0": 0.3, "x1": 6.1, "x2": 2.2}, False)
        for k in range(keys)
    ]


def same(body: dict[str, Any], model: Any, x: dict[str, float]) -> None:
    """The served answer is ``model``'s, to 1e-9."""
    proba = model.predict_proba_one(x)
    assert abs(body["proba"]["true"] - proba[True]) <= TOLERANCE, (body, proba)
    assert abs(body["proba"]["false"] - proba[False]) <= TOLERANCE, (body, proba)


def fresh(body: dict[str, Any]) -> None:
    """The served answer is a fresh model's: no opinion yet."""
    assert body["prediction"] is None and body["proba"] == {}, body


def cli(worker: WorkerProcess, *args: str) -> tuple[int, str]:
    """Run ``stream-app models ...`` with the worker's settings; return (exit code, stdout)."""
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "models", *args],
        env=worker.env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.returncode, done.stdout


async def stream(kafka: Kafka, names: Names, batches: list[list[Event]], inline: bool) -> None:
    """Produce ``batches`` keyed by model key and wait until the group has consumed them."""
    for batch in batches:
        await produce(kafka.bootstrap, names.topics["features"], events(batch, inline=inline))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])


async def test_rollback_and_reset_of_one_key_through_the_cli_change_only_that_key(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    keys = 6
    rounds = traffic(keys, 3 * EVERY, seed=41)
    worker = worker_factory(partitions=PARTITIONS, extra_config=OPS)
    worker.wait_healthy()
    await stream(kafka, names, rounds[:EVERY], inline=True)  # a version at 10 labels
    await stream(kafka, names, rounds[EVERY : 2 * EVERY], inline=True)  # one at 20
    await stream(kafka, names, rounds[2 * EVERY :], inline=True)  # and one at 30

    _, listing = cli(worker, "keys", "--json")
    summary = orjson.loads(listing)
    assert summary["keys"] == keys
    rows = {row["key"]: row for row in summary["rows"]}
    assert sorted(rows) == [f"user-{k}" for k in range(keys)]
    assert all(
        row["examples_learned"] == 3 * EVERY and len(row["versions"]) == 3 for row in rows.values()
    )
    assert rows["user-0"]["partition"] == home_partition("user-0", PARTITIONS)
    assert len(summary["top_by_examples"]) == keys and summary["worst_by_quality"]
    first, _, newest = rows["user-0"]["versions"]  # the worker holds the two newest values only
    _, shown = cli(worker, "show", str(first), "--key", "user-0")
    assert orjson.loads(shown)["examples_learned"] == EVERY

    _, rolled = cli(worker, "rollback", str(first), "--key", "user-0")
    answer = orjson.loads(rolled)
    assert answer["ok"] and answer["model_key"] == "user-0" and answer["from_version"] == first
    assert answer["model_version"] > newest
    _, reset = cli(worker, "reset", "--key", "user-1")
    assert orjson.loads(reset)["ok"]

    async def check(prefix: str) -> None:
        await stream(kafka, names, [probe(keys, prefix)], inline=False)
        served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"], prefix)
        x = probe(1, prefix)[0][2]
        same(served[f"{prefix}-0"], river(rounds, "user-0", EVERY), x)  # rolled back
        fresh(served[f"{prefix}-1"])  # reset
        for k in range(2, keys):  # untouched
            same(served[f"{prefix}-{k}"], river(rounds, f"user-{k}", 3 * EVERY), x)

    await check("p")
    out = tmp_path / "user-0.artifact"
    cli(worker, "export", "--key", "user-0", "--out", str(out))
    exported = artifact.load(out)
    assert (
        exported.version == answer["model_version"] and exported.header["record"]["key"] == "user-0"
    )
    x = probe(1, "x")[0][2]
    expected = river(rounds, "user-0", EVERY).predict_proba_one(x)
    assert abs(exported.estimator.predict_proba_one(x)[True] - expected[True]) <= TOLERANCE

    assert worker.stop() == 0  # a restart serves the rolled-back and the reset state
    again = worker_factory(partitions=PARTITIONS, extra_config=OPS)
    again.wait_healthy()
    await check("q")


async def test_over_http_a_key_is_answered_by_its_owner_and_operated_from_any_worker(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """Two workers: 421 with the owner's address from the other; rollback and reset via either.

    A keyed HTTP prediction with an id is kept at its key's home: its label, sent through the
    other worker, teaches the key on its owner.
    """
    a = worker_factory(partitions=PARTITIONS, extra_config=OPS)
    a.wait_healthy()
    b = worker_factory(partitions=PARTITIONS, extra_config=OPS)

    async def split() -> tuple[list[int], list[int]] | None:
        owned = partitions(a), partitions(b)
        return owned if sorted(owned[0] + owned[1]) == [0, 1, 2, 3] and all(owned) else None

    owned = await wait_for(split, what="the partitions to be split between two workers")
    keys = 8
    rounds = traffic(keys, 2 * EVERY, seed=43)
    await stream(kafka, names, rounds[:EVERY], inline=True)
    await stream(kafka, names, rounds[EVERY:], inline=True)
    worker_of = {
        f"user-{k}": (a, b)[0 if home_partition(f"user-{k}", PARTITIONS) in owned[0] else 1]
        for k in range(keys)
    }
    on_a = [k for k, w in worker_of.items() if w is a]
    on_b = [k for k, w in worker_of.items() if w is b]
    assert on_a and on_b and len(on_b) >= 2
    x = {"x0": 0.3, "x1": 6.1, "x2": 2.2}

    def predict(worker: WorkerProcess, key: str) -> tuple[int, dict[str, Any]]:
        status, body = worker.http(
            "/predict", "POST", {"id": f"h-{key}", "features": x, "user": key}
        )
        return status, orjson.loads(body)

    status, spec = a.http("/openapi.json")
    check = checker(orjson.loads(spec))  # every answer below has the documented shape
    key = on_a[0]
    status, body = predict(b, key)
    assert status == 421 and body["reason"] == "misdirected", body
    check("/predict", "post", status, body)
    assert body["owner"] == f"127.0.0.1:{a.web_port}" and body["model_key"] == key
    status, body = predict(a, key)
    assert status == 200 and body["model_key"] == key and body["joinable"], body
    same(body, river(rounds, key, 2 * EVERY), x)
    check("/predict", "post", status, body)
    status, _ = b.http("/learn", "POST", {"id": f"h-{key}", "label": True, "user": key})
    assert status == 202  # through the other worker: keyed by model key, to the key's home

    async def learned_over_http() -> bool:
        status, shown = a.http(f"/models/keys/{key}")
        live = orjson.loads(shown)["live"]
        return status == 200 and live is not None and live["examples_learned"] == 2 * EVERY + 1

    await wait_for(learned_over_http, what="the HTTP label to teach its key on its owner")
    status, batch = b.http(
        "/predict/batch",
        "POST",
        {"events": [{"features": x, "user": on_b[0]}, {"features": x, "user": key}]},
    )
    assert status == 421 and orjson.loads(batch)["detail"].startswith("events[1]:"), batch

    status, listing = b.http("/models/keys")
    assert status == 200 and orjson.loads(listing)["keys"] == keys
    check("/models/keys", "get", status, orjson.loads(listing))
    status, shown = b.http(f"/models/keys/{key}")
    detail = orjson.loads(shown)
    check("/models/keys/{key}", "get", status, detail)
    assert status == 200 and detail["owner"] == f"127.0.0.1:{a.web_port}" and not detail["here"]
    first = detail["versions"][0]

    status, rolled = b.http(f"/models/keys/{key}/{first}/rollback", "POST", {})  # via the other
    assert status == 200 and orjson.loads(rolled)["ok"], rolled
    check("/models/keys/{key}/{version}/rollback", "post", status, orjson.loads(rolled))
    reset_key, other = on_b[0], on_b[1]
    status, reset = a.http(f"/models/keys/{reset_key}/reset", "POST", {})
    assert status == 200 and orjson.loads(reset)["ok"], reset
    check("/models/keys/{key}/reset", "post", status, orjson.loads(reset))

    status, body = predict(a, key)  # at once: the owner's live model is the rolled-back one
    assert status == 200
    same(body, river(rounds, key, EVERY), x)
    status, body = predict(b, reset_key)
    assert status == 200
    fresh(body)
    status, body = predict(b, other)
    same(body, river(rounds, other, 2 * EVERY), x)  # untouched
    status, live = a.http(f"/models/keys/{key}")
    assert orjson.loads(live)["live"]["version"] == orjson.loads(rolled)["model_version"]
    assert orjson.loads(live)["here"]
