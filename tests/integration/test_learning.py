"""Learning on the real broker: the oracle against River's own loop, delayed labels, drift."""

from __future__ import annotations

import random
from typing import Any

import orjson
from river import metrics
from river.datasets import synth
from river.evaluate import progressive_val_score

from stream_app import reasons
from stream_app.core.messages import decode_dead_letter
from stream_app.models import logistic_regression
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    predictions_by_id,
    produce,
    read_all,
    wait_consumed,
    wait_for,
)

ORACLE_EVENTS = 5000


def sea(n: int, seed: int, change_at: int | None = None) -> list[tuple[dict[str, float], bool]]:
    """Seeded SEA events with string feature names (JSON object keys), optionally drifting."""
    if change_at is None:
        stream: Any = synth.SEA(variant=0, seed=seed)
    else:
        stream = synth.ConceptDriftStream(
            stream=synth.SEA(variant=0, seed=seed),
            drift_stream=synth.SEA(variant=3, seed=seed + 1),
            position=change_at,
            width=50,
            seed=seed,
        )
    return [({f"x{k}": float(v) for k, v in x.items()}, bool(y)) for x, y in stream.take(n)]


def feature_messages(
    data: list[tuple[dict[str, float], bool]], inline: bool
) -> list[tuple[bytes, bytes]]:
    out = []
    for i, (x, y) in enumerate(data):
        body: dict[str, Any] = {"id": f"e-{i}", "features": x}
        if inline:
            body["label"] = y
        out.append((f"e-{i}".encode(), orjson.dumps(body)))
    return out


async def test_oracle_every_prediction_equals_rivers_own_loop(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    extra = '[guard]\nenabled = false\n[drift]\npolicy = "none"\n[learn]\nquality_window = 5000\n'
    worker = worker_factory(partitions=1, extra_config=extra)
    worker.wait_healthy()
    data = sea(ORACLE_EVENTS, seed=11)
    await produce(kafka.bootstrap, names.topics["features"], feature_messages(data, inline=True))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert len(served) == ORACLE_EVENTS

    # The plain River loop: predict, then learn, event by event, with the same factory.
    model = logistic_regression()
    for i, (x, y) in enumerate(data):
        body = served[f"e-{i}"]
        if i == 0:  # the contract: no opinion before the model has learned anything
            assert body["prediction"] is None and body["proba"] == {}
        else:
            proba = model.predict_proba_one(x)
            assert body["prediction"] == model.predict_one(x)
            assert set(body["proba"]) == {"false", "true"}
            assert abs(body["proba"]["true"] - proba[True]) <= 1e-9
            assert abs(body["proba"]["false"] - proba[False]) <= 1e-9
        model.learn_one(x, y)

    # River's progressive_val_score skips a None answer as we skip the untrained one: score from
    # event 1 with event 0 learned, which is exactly the service's prequential accuracy.
    reference = logistic_regression()
    reference.learn_one(*data[0])
    expected = progressive_val_score(data[1:], reference, metrics.Accuracy()).get()
    scraped = worker.metrics()
    assert abs(scraped['stream_app_model_quality{metric="accuracy"}'] - expected) <= 1e-12
    assert scraped["stream_app_labels_learned_total"] == ORACLE_EVENTS
    assert scraped.get("stream_app_drift_detected_total", 0) == 0


async def test_delayed_labels_learned_once_duplicates_counted_strangers_dead_lettered(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    early = "[learn]\nearly_label_ttl_s = 1.0\n"  # strangers wait this long for their event
    worker = worker_factory(extra_config="[guard]\nenabled = false\n" + early)
    worker.wait_healthy()
    data = sea(600, seed=5)
    await produce(kafka.bootstrap, names.topics["features"], feature_messages(data, inline=False))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    rng = random.Random(5)
    order = list(range(600))
    rng.shuffle(order)
    labels = [
        (f"e-{i}".encode(), orjson.dumps({"id": f"e-{i}", "label": data[i][1]})) for i in order
    ]
    duplicates = labels[:50]
    strangers = [
        (f"x-{i}".encode(), orjson.dumps({"id": f"x-{i}", "label": True})) for i in range(20)
    ]
    await produce(kafka.bootstrap, names.topics["labels"], labels + duplicates + strangers)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["labels"])
    stranger_key = f'stream_app_labels_rejected_total{{reason="{reasons.LABEL_WITHOUT_EVENT}"}}'

    async def strangers_expired() -> bool:
        return worker.metrics().get(stranger_key, 0) >= 20

    await wait_for(strangers_expired, what="the strangers' labels to expire")
    scraped = worker.metrics()
    assert scraped["stream_app_labels_learned_total"] == 600
    assert scraped[f'stream_app_labels_rejected_total{{reason="{reasons.DUPLICATE_LABEL}"}}'] == 50
    assert (
        scraped[f'stream_app_labels_rejected_total{{reason="{reasons.LABEL_WITHOUT_EVENT}"}}'] == 20
    )
    assert scraped["stream_app_pending_events"] == 0
    letters = [
        decode_dead_letter(r.value)
        for r in await read_all(kafka.bootstrap, names.topics["dead_letters"])
    ]
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_reason.setdefault(letter["reason"], []).append(letter)
    assert len(by_reason[reasons.DUPLICATE_LABEL]) == 50
    assert sorted(
        orjson.loads(d["original"])["id"] for d in by_reason[reasons.LABEL_WITHOUT_EVENT]
    ) == sorted(f"x-{i}" for i in range(20))
    assert all(d["source"]["topic"] == names.topics["labels"] for d in letters)


async def test_drift_is_reported_and_the_challenger_takes_over(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    change_at, total = 5000, 10_000
    worker = worker_factory(partitions=1, extra_config="[guard]\nenabled = false\n")
    worker.wait_healthy()
    data = sea(total, seed=2, change_at=change_at)
    await produce(kafka.bootstrap, names.topics["features"], feature_messages(data, inline=True))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    events = [
        orjson.loads(r.value) for r in await read_all(kafka.bootstrap, names.topics["model_events"])
    ]
    drifts = [e for e in events if e["type"] == "drift"]
    promotions = [e for e in events if e["type"] == "promotion"]
    assert drifts and all(e["examples_seen"] > change_at - 50 for e in drifts), events
    assert drifts[0]["examples_seen"] - change_at <= 1000
    assert drifts[0]["detector"] == "ADWIN" and drifts[0]["model_version"] == 0
    assert len(promotions) == 1 and promotions[0]["model_version"] == 1

    predictions = [
        orjson.loads(r.value) for r in await read_all(kafka.bootstrap, names.topics["predictions"])
    ]
    truth = {f"e-{i}": y for i, (_, y) in enumerate(data)}
    hits = [p["prediction"] == truth[p["id"]] for p in predictions]
    promoted_at = next(i for i, p in enumerate(predictions) if p["model_version"] == 1)
    before = sum(hits[change_at - 2000 : change_at]) / 2000
    after = sum(hits[promoted_at : promoted_at + 2000]) / 2000
    assert after >= before - 0.03, (before, after)
    shadow = await read_all(kafka.bootstrap, names.topics["predictions_shadow"])
    assert shadow and {orjson.loads(r.value)["model_version"] for r in shadow} == {1}
    assert worker.metrics()["stream_app_drift_detected_total"] == len(drifts)

    async def serving_the_newest() -> bool:
        # The writer checkpoints in the background after the batch that crossed the count: a
        # version may be announced after the read above, so each poll reads the events again.
        announced = [
            orjson.loads(r.value)
            for r in await read_all(kafka.bootstrap, names.topics["model_events"])
        ]
        kinds = ("promotion", "checkpoint")
        newest = max(e["model_version"] for e in announced if e["type"] in kinds)
        serving = worker.metrics()['stream_app_model_version{model="default",status="serving"}']
        return bool(serving == newest)

    await wait_for(serving_the_newest, what="the serving version's metric to name the newest")


async def test_pending_events_survive_a_killed_worker(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    first = worker_factory(extra_config="[guard]\nenabled = false\n")
    first.wait_healthy()
    data = sea(300, seed=8)
    await produce(kafka.bootstrap, names.topics["features"], feature_messages(data, inline=False))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    first.kill()  # SIGKILL: nothing is flushed, the pending store in memory is gone

    second = worker_factory(extra_config="[guard]\nenabled = false\n")
    second.wait_healthy(timeout=90)  # the dead member's session must time out first
    labels = [
        (f"e-{i}".encode(), orjson.dumps({"id": f"e-{i}", "label": y}))
        for i, (_, y) in enumerate(data)
    ]
    await produce(kafka.bootstrap, names.topics["labels"], labels)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["labels"])
    scraped = second.metrics()
    assert scraped["stream_app_labels_learned_total"] == 300
    assert (
        scraped.get(
            f'stream_app_labels_rejected_total{{reason="{reasons.LABEL_WITHOUT_EVENT}"}}', 0
        )
        == 0
    )
    assert "restored" in second.log_text()
