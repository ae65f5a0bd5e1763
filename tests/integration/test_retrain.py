"""Retraining on the real broker: on a schedule (by count, on time), on a quality floor, skipped.

The retrain reads the tail of the learning log, trains a fresh model off the event loop, and
installs it as the challenger, which then takes over by the promotion path when it is better.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_app.core.learning_log import decode_log_entries
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import produce, read_all, read_registry, wait_consumed, wait_for
from tests.integration.test_learning import feature_messages, sea

BASE = "[guard]\nenabled = false\n[drift]\npolicy = 'none'\nchallenger_window = 200\n"


async def model_events(kafka: Kafka, names: Names, kind: str) -> list[dict[str, Any]]:
    records = await read_all(kafka.bootstrap, names.topics["model_events"])
    return [e for e in (orjson.loads(r.value) for r in records) if e["type"] == kind]


async def wait_event(kafka: Kafka, names: Names, kind: str) -> list[dict[str, Any]]:
    async def seen() -> list[dict[str, Any]]:
        return await model_events(kafka, names, kind)

    found: list[dict[str, Any]] = await wait_for(seen, timeout=60, what=f"a {kind} event")
    return found


def flipped(messages: list[tuple[bytes | None, bytes | None]], prefix: str) -> list[Any]:
    """The same events under new ids, with every label flipped: a seeded change of concept."""
    out = []
    for key, value in messages:
        body = orjson.loads(value or b"{}")
        body["id"], body["label"] = f"{prefix}{body['id']}", not body["label"]
        out.append(((prefix.encode() + (key or b"")), orjson.dumps(body)))
    return out


async def test_a_schedule_retrains_on_the_log_tail_and_the_challenger_learns_in_shadow(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    extra = "[retrain]\npolicy = 'schedule'\nevery_s = 0.0\nevery_examples = 1000\n"
    extra += "window = 800\nmin_examples = 500\n"
    worker = worker_factory(partitions=4, extra_config=BASE + extra)
    worker.wait_healthy()
    messages = feature_messages(sea(1200, seed=91), inline=True)
    await produce(kafka.bootstrap, names.topics["features"], messages[:1000])
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    (event,) = await wait_event(kafka, names, "retrain")
    assert event["reason"] == "schedule" and event["examples"] == 800
    # The last 800 of the 1,000 logged examples, by the offsets of the messages that hold them
    # (a message holds a batch's examples).
    log = await read_all(kafka.bootstrap, f"{names.app_id}-learning-log")
    held = [record.offset for record in log for _ in decode_log_entries(record.value)]
    assert len(held) == 1000 and len(log) < 1000
    assert [event["from_offset"], event["to_offset"]] == [held[-800], held[-1]]
    health = worker.wait_healthy()
    assert health["shadow"] is not None  # the retrained model learns in shadow from now on
    registry = await read_registry(kafka.bootstrap, names.app_id)
    assert "retrain" in {r.reason for r in registry.versions("default")}
    await produce(kafka.bootstrap, names.topics["features"], messages[1000:])
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    assert len(await model_events(kafka, names, "retrain")) == 1  # 200 more: not due again


async def test_a_schedule_by_time_fires_on_time_even_without_traffic(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    every = 4.0
    extra = f"[retrain]\npolicy = 'schedule'\nevery_s = {every}\nevery_examples = 0\n"
    extra += "window = 400\nmin_examples = 300\n"
    worker = worker_factory(partitions=4, extra_config=BASE + extra)
    worker.wait_healthy()
    messages = feature_messages(sea(400, seed=95), inline=True)
    await produce(kafka.bootstrap, names.topics["features"], messages)
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    async def records(count: int) -> list[Any]:
        found = await read_all(kafka.bootstrap, names.topics["model_events"])
        timed = [(r.timestamp / 1000.0, orjson.loads(r.value)) for r in found]
        due = [(t, e) for t, e in timed if e["type"] == "retrain"]  # (skipped: before the events)
        return due if len(due) >= count else []

    # Nothing more arrives: the schedule still fires, once per period, from the clock alone.
    (t1, first), (t2, second), *_ = await wait_for(
        lambda: records(2), timeout=6 * every, what="two scheduled retrains"
    )
    assert first["reason"] == second["reason"] == "schedule" and second["examples"] == 400
    started = (t1 - first["seconds"], t2 - second["seconds"])  # announced after training
    assert every - 0.5 <= started[1] - started[0] < 2 * every  # not early, and not a period late


async def test_a_quality_floor_retrains_after_a_change_and_the_retrained_model_takes_over(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    # A Hoeffding tree is slow to unlearn a concept; one trained on the new one wins at once.
    extra = "[model]\nfactory = 'stream_app.models:hoeffding_tree'\n"
    extra += "[learn]\nquality_window = 200\n[retrain]\npolicy = 'quality_floor'\n"
    extra += "quality_floor = 0.7\npatience = 200\nwindow = 400\nmin_examples = 200\n"
    worker = worker_factory(partitions=4, extra_config=BASE + extra)
    worker.wait_healthy()
    group = f"{names.app_id}-serve"
    before = feature_messages(sea(1500, seed=92), inline=True)
    await produce(kafka.bootstrap, names.topics["features"], before)
    await wait_consumed(kafka.bootstrap, group, names.topics["features"])
    assert await model_events(kafka, names, "retrain") == []  # quality above the floor
    after = flipped(feature_messages(sea(2000, seed=93), inline=True), "c-")
    await produce(kafka.bootstrap, names.topics["features"], after[:500])
    await wait_consumed(kafka.bootstrap, group, names.topics["features"])
    (event,) = await wait_event(kafka, names, "retrain")
    assert event["reason"] == "quality_floor" and event["examples"] == 400
    await produce(kafka.bootstrap, names.topics["features"], after[500:])
    await wait_consumed(kafka.bootstrap, group, names.topics["features"])
    (promotion,) = await wait_event(kafka, names, "promotion")
    assert promotion["model_version"] == event["challenger_version"]
    assert worker.metrics()['stream_app_model_quality{metric="accuracy"}'] > 0.7


async def test_a_retrain_with_too_few_examples_is_skipped_and_says_so(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    extra = "[retrain]\npolicy = 'schedule'\nevery_s = 0.0\nevery_examples = 100\n"
    extra += "window = 5000\nmin_examples = 5000\n"
    worker = worker_factory(partitions=4, extra_config=BASE + extra)
    worker.wait_healthy()
    messages = feature_messages(sea(150, seed=94), inline=True)
    await produce(kafka.bootstrap, names.topics["features"], messages)
    (skipped, *_) = await wait_event(kafka, names, "retrain_skipped")
    assert skipped["reason"] == "schedule" and skipped["needed"] == 5000
    assert skipped["examples"] >= 100 and worker.wait_healthy()["shadow"] is None
