"""Faults on the real broker: fuzzed input on both input topics, a poisoned newest checkpoint."""

from __future__ import annotations

import json
import random
from collections import Counter

import orjson

from stream_app import reasons
from stream_app.core.messages import decode_dead_letter
from stream_app.registry.records import changelog_topic, chunk_key
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    end_offsets,
    produce,
    read_all,
    read_registry,
    wait_consumed,
    wait_for,
)
from tests.integration.test_learning import feature_messages, sea

FUZZ = 10_000
MAX_BYTES = 4096


def fuzzed(rng: random.Random, i: int) -> bytes:
    """One seeded nasty message: random bytes, broken or odd JSON, wrong types, edge values."""
    good = {"id": f"f-{i}", "features": {"x": rng.gauss(0, 1), "c": rng.choice(["a", "b"])}}
    kind = rng.randrange(14)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 64))
    if kind == 1:
        return orjson.dumps(good)[: rng.randrange(1, 20)]  # truncated
    if kind == 2:
        return b"[" * 3000 + b"]" * 3000  # deep nesting (and oversized)
    if kind == 3:
        return json.dumps(
            {**good, "features": {"x": rng.choice([float("nan"), float("inf")])}}
        ).encode()
    if kind == 4:
        return b'{"id": "f-%d", "features": {"x": 1e999}}' % i  # a huge number
    if kind == 5:
        return orjson.dumps({**good, "features": {"x": rng.choice([None, [1], {"a": 1}])}})
    if kind == 6:
        return orjson.dumps({**good, "id": rng.choice([None, 7, "", "x" * 200])})
    if kind == 7:
        return orjson.dumps({**good, "features": {"x": "y" * 300}})  # long string
    if kind == 8:
        return b'{"id": "f-%d", "id": "g-%d", "features": {"x": 1}}' % (i, i)  # duplicate keys
    if kind == 9:
        return orjson.dumps(
            {**good, "id": rng.choice(["\u00e9\u2603\U0001f600", "\u200b", "\ufeffid"])}
        )
    if kind == 10:
        return orjson.dumps({**good, "pad": "z" * MAX_BYTES})  # oversized
    if kind == 11:
        return b'"\\ud800"'  # an unpaired surrogate
    if kind == 12:
        return orjson.dumps({**good, "label": rng.choice([1.5, None, [True]])})  # served, label bad
    return orjson.dumps(good)


async def test_fuzzed_features_and_labels_are_each_served_or_dead_lettered(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    # A label whose event was never served waits learn.early_label_ttl_s (600 s by default)
    # before it is dead-lettered: 1 s here, and the test waits for it below.
    worker = worker_factory(
        extra_config=f"[limits]\nmax_message_bytes = {MAX_BYTES}\n"
        "[learn]\nearly_label_ttl_s = 1.0\n"
    )
    worker.wait_healthy()
    rng = random.Random(2026)
    features = [
        (None if rng.random() < 0.5 else f"k{i}".encode(), fuzzed(rng, i)) for i in range(FUZZ)
    ]
    labels = [(f"f-{i}".encode(), fuzzed(rng, i)) for i in range(FUZZ // 5)]
    await produce(kafka.bootstrap, names.topics["features"], features)
    await produce(kafka.bootstrap, names.topics["labels"], labels)
    group = f"{names.app_id}-serve"
    await wait_consumed(kafka.bootstrap, group, names.topics["features"], timeout=120)
    await wait_consumed(kafka.bootstrap, group, names.topics["labels"], timeout=120)

    async def no_label_held() -> bool:  # (their offsets were committed while they waited)
        return worker.metrics().get("stream_app_early_labels") == 0

    await wait_for(no_label_held, what="the held labels' dead letters")
    predictions = await read_all(kafka.bootstrap, names.topics["predictions"])
    letters = [
        decode_dead_letter(r.value)
        for r in await read_all(kafka.bootstrap, names.topics["dead_letters"])
    ]
    by_topic = Counter(letter["source"]["topic"] for letter in letters)
    # Every feature message got exactly one answer: a prediction or a dead letter (an event whose
    # label was bad got both: its prediction, and a dead letter for the label).
    label_letters = [
        d
        for d in letters
        if d["source"]["topic"] == names.topics["features"] and d["reason"] == reasons.INVALID_LABEL
    ]
    assert len(predictions) + by_topic[names.topics["features"]] - len(label_letters) == FUZZ
    # Every label message was learned, or dead-lettered with a reason.
    scraped = worker.metrics()
    learned = scraped.get("stream_app_labels_learned_total", 0)
    assert learned + by_topic[names.topics["labels"]] == len(labels)
    assert all(letter["reason"] in reasons.ALL for letter in letters)
    assert scraped["stream_app_events_total"] == FUZZ
    assert scraped["stream_app_predictions_total"] == len(predictions)
    assert sum(
        v for k, v in scraped.items() if k.startswith("stream_app_dead_letters_total")
    ) == len(letters)
    assert worker.proc.poll() is None and "Traceback" not in worker.log_text()
    assert worker.wait_healthy()["status"] == "ok"


async def test_a_poisoned_newest_checkpoint_falls_back_to_the_previous_good_one(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    config = "[guard]\nenabled = false\n[registry]\ncheckpoint_every_examples = 300\n"
    first = worker_factory(partitions=1, extra_config=config)
    first.wait_healthy()
    messages = feature_messages(sea(900, seed=51), inline=True)
    for start in (0, 450):  # two rounds: two checkpoints
        await produce(kafka.bootstrap, names.topics["features"], messages[start : start + 450])
        await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])

    async def two_versions() -> object:
        registry = await read_registry(kafka.bootstrap, names.app_id)
        return registry if len(registry.versions("default")) >= 2 else None

    registry = await wait_for(two_versions, what="two checkpoints")
    first.kill()
    registry = await read_registry(kafka.bootstrap, names.app_id)
    newest = registry.newest("default")
    previous = [r for r in registry.versions("default") if r.version < newest.version][-1]
    # Poison the newest version: a chunk that fails its checksum, written where the writer wrote.
    await produce(
        kafka.bootstrap,
        changelog_topic(names.app_id),
        [(chunk_key("default", newest.version, 0), b"poison")],
    )

    second = worker_factory(partitions=1, extra_config=config)
    second.wait_healthy(timeout=90)
    assert second.metrics()['stream_app_version_load_failures_total{reason="corrupt"}'] >= 1
    assert f"v{newest.version} cannot be restored" in second.log_text()
    assert f"restored model default v{previous.version} " in second.log_text()

    # The learning log then gives back what the poisoned version had learned, and more.
    async def recovered() -> object:
        registry = await read_registry(kafka.bootstrap, names.app_id)
        now = registry.newest("default", "serving")
        return now if now.version > newest.version and now.examples_learned == 900 else None

    await wait_for(recovered, what="a version with all 900 examples, replayed from the log")


async def test_sigkill_mid_stream_loses_no_event_and_learns_no_label_twice(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    import asyncio

    total = 20_000
    config = "[guard]\nenabled = false\n[registry]\ncheckpoint_every_examples = 2000\n"
    first = worker_factory(partitions=4, extra_config=config)
    first.wait_healthy()
    messages = feature_messages(sea(total, seed=61), inline=True)
    sending = asyncio.create_task(produce(kafka.bootstrap, names.topics["features"], messages))
    kill_after = random.Random(61).randint(2000, 6000)  # a seeded point early in the stream

    async def served_enough() -> bool:
        ends = await end_offsets(kafka.bootstrap, names.topics["predictions"])
        return sum(ends.values()) >= kill_after

    await wait_for(served_enough, what=f"{kill_after} predictions")
    first.kill()
    await sending

    second = worker_factory(partitions=4, extra_config=config)
    second.wait_healthy(timeout=90)
    group = f"{names.app_id}-serve"
    await wait_consumed(kafka.bootstrap, group, names.topics["features"], timeout=120)
    # Until the dead writer's session expired, this worker forwarded examples to the writer's topic.
    await wait_consumed(kafka.bootstrap, group, f"{names.app_id}-examples", timeout=120)
    ids = [
        orjson.loads(r.value)["id"]
        for r in await read_all(kafka.bootstrap, names.topics["predictions"])
    ]
    assert set(ids) == {f"e-{i}" for i in range(total)}  # at least once: nothing lost
    duplicates = len(ids) - total
    print(
        f"SIGKILL mid-stream: {total} events, {duplicates} served twice (at-least-once redelivery)"
    )
    learned_by_second = second.metrics()["stream_app_labels_learned_total"]
    assert second.metrics()["stream_app_predictions_total"] > 0  # the kill was mid-stream
    assert second.stop() == 0  # a clean stop checkpoints what the second worker learned
    final = (await read_registry(kafka.bootstrap, names.app_id)).newest("default")
    assert final is not None
    # Everything the second worker learned is stored (learning before it had taken over as the
    # writer used to be lost: it served while its partitions were still being restored).
    assert final.examples_learned >= learned_by_second
    # Learned at most once per label: what the dead worker learned after its last checkpoint is
    # lost (bounded by the checkpoint interval), never learned twice.
    assert final.examples_learned <= total
