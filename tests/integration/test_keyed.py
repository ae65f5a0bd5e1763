"""Keyed models on the real broker: one model per key, learned where the key's partition lives.

Producers key events and labels by the model key (aiokafka: murmur2), so every record of a key
lands on its home partition. Each key's predictions must equal River's own predict-then-learn
loop over that key's events; nothing is forwarded to a single writer; bad keys are dead-lettered;
a restart resumes every key from its last checkpoint; with two workers each learns the keys it owns.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app import reasons
from stream_app.core.messages import decode_dead_letter
from stream_app.core.route import home_partition
from stream_app.models import logistic_regression
from stream_app.registry.keyed import read_header, split_record_key
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    predictions_by_id,
    produce,
    read_all,
    wait_consumed,
    wait_for,
)
from tests.integration.test_learning import sea
from tests.integration.test_scaling import partitions

PARTITIONS = 4
KEYED = (
    "[guard]\nenabled = false\n[drift]\npolicy = 'none'\n"
    "[model]\nkey_field = 'user'\nkey_fallback = 'none'\n"
)

Event = tuple[str, str, dict[str, float], bool]
"""(event id, model key, features, label)."""


def traffic(keys: int, rounds: int, seed: int, prefix: str = "e") -> list[list[Event]]:
    """``rounds`` rounds of one event per key; odd keys learn the opposite concept."""
    data = iter(sea(keys * rounds, seed=seed))
    out = []
    for r in range(rounds):
        batch = []
        for k in range(keys):
            x, y = next(data)
            batch.append((f"{prefix}-{r}-{k}", f"user-{k}", x, y if k % 2 == 0 else not y))
        out.append(batch)
    return out


def events(batch: list[Event], inline: bool) -> list[tuple[bytes, bytes]]:
    """Feature messages keyed by model key, with the label inline or not."""
    messages = []
    for event_id, key, x, y in batch:
        body: dict[str, Any] = {"id": event_id, "features": x, "user": key}
        if inline:
            body["label"] = y
        messages.append((key.encode(), orjson.dumps(body)))
    return messages


def labels(batch: list[Event]) -> list[tuple[bytes, bytes]]:
    """Delayed labels keyed by model key; every other one also names its key in the body."""
    out = []
    for i, (event_id, key, _, y) in enumerate(batch):
        body: dict[str, Any] = {"id": event_id, "label": y}
        if i % 2:
            body["user"] = key
        out.append((key.encode(), orjson.dumps(body)))
    return out


def check_oracle(rounds: list[list[Event]], served: dict[str, dict[str, Any]]) -> int:
    """Hold every key's predictions to River's own loop over its events; return how many."""
    models: dict[str, Any] = {}
    compared = 0
    for batch in rounds:
        for event_id, key, x, y in batch:
            body = served[event_id]
            assert body["model_key"] == key and "fallback" not in body, body
            model = models.setdefault(key, logistic_regression())
            if key not in models or not body["proba"]:
                assert body["prediction"] is None  # the key's first event: no opinion yet
            else:
                proba = model.predict_proba_one(x)
                assert abs(body["proba"]["true"] - proba[True]) <= 1e-9, (event_id, key)
                assert abs(body["proba"]["false"] - proba[False]) <= 1e-9, (event_id, key)
                compared += 1
            model.learn_one(x, y)
    return compared


async def learned_total(worker: WorkerProcess) -> float:
    return float(worker.metrics().get("stream_app_labels_learned_total", 0))


async def stored_versions(kafka: Kafka, names: Names) -> dict[str, dict[str, Any]]:
    """The newest stored version's header of every key, from the keyed-models topic."""
    newest: dict[str, dict[str, Any]] = {}
    for record in await read_all(kafka.bootstrap, f"{names.app_id}-keyed-models"):
        if record.value is None:
            continue
        key, version = split_record_key(record.key)
        if version >= newest.get(key, {}).get("version", -1):
            newest[key] = read_header(record.value)
    return newest


async def test_each_keys_predictions_are_rivers_own_loop_and_nothing_is_forwarded(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """60 keys on 4 partitions, inline and delayed labels keyed by model key, one worker."""
    worker = worker_factory(partitions=PARTITIONS, extra_config=KEYED)
    worker.wait_healthy()
    keys, inline_rounds = 60, 12
    rounds = traffic(keys, inline_rounds + 2, seed=21)
    group, features = f"{names.app_id}-serve", names.topics["features"]
    for batch in rounds[:inline_rounds]:
        await produce(kafka.bootstrap, features, events(batch, inline=True))
    delayed = rounds[inline_rounds]
    await produce(kafka.bootstrap, features, events(delayed, inline=False))
    await wait_consumed(kafka.bootstrap, group, features)
    await produce(kafka.bootstrap, names.topics["labels"], labels(delayed))
    expected = keys * (inline_rounds + 1)

    async def delayed_learned() -> bool:
        return await learned_total(worker) >= expected

    await wait_for(delayed_learned, what=f"{expected} labels learned")
    await produce(kafka.bootstrap, features, events(rounds[-1], inline=True))
    await wait_consumed(kafka.bootstrap, group, features)
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert len(served) == keys * len(rounds)
    assert check_oracle(rounds, served) == keys * (len(rounds) - 1)
    scraped = worker.metrics()
    assert scraped["stream_app_labels_learned_total"] == keys * len(rounds)
    assert scraped.get("stream_app_labels_forwarded_total", 0) == 0
    rejected = {k: v for k, v in scraped.items() if k.startswith("stream_app_labels_rejected")}
    assert not any(rejected.values()), rejected
    assert scraped["stream_app_model_keys"] == keys


async def test_batch_mode_answers_each_keys_events_as_rivers_loop_per_batch(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """Batch inference, one vectorised call per key: labels come after each phase's events, so
    every answer of a phase is the key's model as it stood at the phase's start, whatever the
    micro-batches the worker polled."""
    batch_mode = "[inference]\nmode = 'batch'\nmany_min_rows = 1\n"
    worker = worker_factory(partitions=PARTITIONS, extra_config=KEYED + batch_mode)
    worker.wait_healthy()
    keys, group, features = 20, f"{names.app_id}-serve", names.topics["features"]
    rounds = traffic(keys, 6, seed=23, prefix="b")
    phases = [rounds[0] + rounds[1], rounds[2] + rounds[3], rounds[4] + rounds[5]]
    for n, phase in enumerate(phases, 1):
        await produce(kafka.bootstrap, features, events(phase, inline=False))
        await wait_consumed(kafka.bootstrap, group, features)
        await produce(kafka.bootstrap, names.topics["labels"], labels(phase))

        async def phase_learned(expected: int = n * 2 * keys) -> bool:
            return await learned_total(worker) >= expected

        await wait_for(phase_learned, what=f"phase {n} learned")
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert len(served) == keys * len(rounds)
    models = {f"user-{k}": logistic_regression() for k in range(keys)}
    compared = 0
    for n, phase in enumerate(phases):
        for event_id, key, x, _ in phase:
            body = served[event_id]
            assert body["model_key"] == key and "fallback" not in body, body
            if n == 0:
                assert body["prediction"] is None  # nothing learned yet
                continue
            proba = models[key].predict_proba_one(x)
            assert abs(body["proba"]["true"] - proba[True]) <= 1e-9, (event_id, key)
            compared += 1
        for _, key, x, y in phase:
            models[key].learn_one(x, y)
    assert compared == keys * 4
    assert worker.metrics().get("stream_app_labels_forwarded_total", 0) == 0


async def test_events_without_a_valid_key_are_dead_lettered_with_their_reason(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(partitions=PARTITIONS, extra_config=KEYED)
    worker.wait_healthy()
    x = {"x0": 1.0}
    bad = [
        {"id": "b-0", "features": x},
        {"id": "b-1", "features": x, "user": 7},
        {"id": "b-2", "features": x, "user": ""},
        {"id": "b-3", "features": x, "user": "u" * 129},
    ]
    good = {"id": "g-0", "features": x, "user": "u-1"}
    await produce(
        kafka.bootstrap,
        names.topics["features"],
        [(b"k", orjson.dumps(body)) for body in [*bad, good]],
    )
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", names.topics["features"])
    letters = [
        decode_dead_letter(r.value)
        for r in await read_all(kafka.bootstrap, names.topics["dead_letters"])
    ]
    assert sorted(orjson.loads(letter["original"])["id"] for letter in letters) == [
        "b-0",
        "b-1",
        "b-2",
        "b-3",
    ]
    assert {letter["reason"] for letter in letters} == {reasons.INVALID_MODEL_KEY}
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert list(served) == ["g-0"] and served["g-0"]["model_key"] == "u-1"
    scraped = worker.metrics()
    assert scraped[f'stream_app_dead_letters_total{{reason="{reasons.INVALID_MODEL_KEY}"}}'] == 4


@pytest.mark.parametrize("store", ["memory", "disk"])
async def test_a_restart_resumes_every_key_from_its_last_checkpoint(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, store: str
) -> None:
    """Stop (checkpoints every dirty key), start again: each key goes on where it stood.

    With ``model.key_store = "disk"`` the restarted worker rebuilds its RocksDB store of the
    keys' newest values from the topic and loads every key from it."""
    keys = 20
    rounds = traffic(keys, 30, seed=23)
    group, features = f"{names.app_id}-serve", names.topics["features"]
    config = KEYED + f"key_store = '{store}'\n"
    first = worker_factory(partitions=PARTITIONS, extra_config=config)
    first.wait_healthy()
    for batch in rounds[:20]:
        await produce(kafka.bootstrap, features, events(batch, inline=True))
    await wait_consumed(kafka.bootstrap, group, features)
    assert first.stop() == 0
    before = await stored_versions(kafka, names)
    assert {key: h["examples_learned"] for key, h in before.items()} == {
        f"user-{k}": 20 for k in range(keys)
    }
    second = worker_factory(partitions=PARTITIONS, extra_config=config)
    second.wait_healthy()
    on_disk = Path(second.env["STREAM_APP_DATA_DIR"]) / "keyed" / names.app_id
    assert on_disk.is_dir() == (store == "disk")
    for batch in rounds[20:]:
        await produce(kafka.bootstrap, features, events(batch, inline=True))
    await wait_consumed(kafka.bootstrap, group, features)
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert check_oracle(rounds, served) == keys * (len(rounds) - 1)  # each key went on exactly
    scraped = second.metrics()
    assert scraped["stream_app_labels_learned_total"] == keys * 10  # none learned twice
    assert second.stop() == 0
    after = await stored_versions(kafka, names)
    counts: dict[str, int] = defaultdict(int)
    for key, header in after.items():
        counts[key] = header["examples_learned"]
    assert counts == {f"user-{k}": 30 for k in range(keys)}


async def test_delayed_labels_after_a_restart_teach_their_keys_exactly(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """Events served before a restart wait for their labels after it, at their key's home.

    Event ids and model keys have different homes, so the served events must be restored by
    their key's home and name their key: a label must teach its key's model, not the global one.
    """
    keys = 20
    rounds = traffic(keys, 8, seed=29)
    group, features = f"{names.app_id}-serve", names.topics["features"]
    first = worker_factory(partitions=PARTITIONS, extra_config=KEYED)
    first.wait_healthy()
    for batch in rounds[:6]:
        await produce(kafka.bootstrap, features, events(batch, inline=True))
    delayed = rounds[6]
    await produce(kafka.bootstrap, features, events(delayed, inline=False))
    await wait_consumed(kafka.bootstrap, group, features)
    assert first.stop() == 0
    second = worker_factory(partitions=PARTITIONS, extra_config=KEYED)
    second.wait_healthy()
    await produce(kafka.bootstrap, names.topics["labels"], labels(delayed))

    async def delayed_learned() -> bool:
        return await learned_total(second) >= keys

    await wait_for(delayed_learned, what=f"{keys} delayed labels learned after the restart")
    await produce(kafka.bootstrap, features, events(rounds[-1], inline=True))
    await wait_consumed(kafka.bootstrap, group, features)
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert check_oracle(rounds, served) == keys * (len(rounds) - 1)  # the labels taught their keys
    scraped = second.metrics()
    assert scraped["stream_app_labels_learned_total"] == keys * 2
    assert scraped.get("stream_app_labels_forwarded_total", 0) == 0
    rejected = {k: v for k, v in scraped.items() if k.startswith("stream_app_labels_rejected")}
    assert not any(rejected.values()), rejected  # no label_without_event, no duplicate_label


async def test_two_workers_each_learn_the_keys_they_own_exactly(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """2 workers, 4 partitions, 40 keys: whoever serves a key, its predictions are River's own."""
    a = worker_factory(partitions=PARTITIONS, extra_config=KEYED)
    a.wait_healthy()
    b = worker_factory(partitions=PARTITIONS, extra_config=KEYED)

    async def split() -> tuple[list[int], list[int]] | None:
        owned = partitions(a), partitions(b)
        return owned if sorted(owned[0] + owned[1]) == [0, 1, 2, 3] and all(owned) else None

    owned = await wait_for(split, what="the partitions to be split between two workers")
    keys, inline_rounds = 40, 8
    rounds = traffic(keys, inline_rounds + 2, seed=31)
    group, features = f"{names.app_id}-serve", names.topics["features"]
    for batch in rounds[:inline_rounds]:
        await produce(kafka.bootstrap, features, events(batch, inline=True))
    delayed = rounds[inline_rounds]
    await produce(kafka.bootstrap, features, events(delayed, inline=False))
    await wait_consumed(kafka.bootstrap, group, features)
    await produce(kafka.bootstrap, names.topics["labels"], labels(delayed))
    homes = [home_partition(f"user-{k}", PARTITIONS) for k in range(keys)]
    owns = [sum(home in mine for home in homes) for mine in owned]  # keys each worker owns
    assert all(owns) and sum(owns) == keys

    async def delayed_learned() -> bool:
        learned = [await learned_total(w) for w in (a, b)]
        return all(m >= n * (inline_rounds + 1) for m, n in zip(learned, owns, strict=True))

    await wait_for(delayed_learned, what="each worker to learn its keys' delayed labels")
    await produce(kafka.bootstrap, features, events(rounds[-1], inline=True))
    await wait_consumed(kafka.bootstrap, group, features)
    served = await predictions_by_id(kafka.bootstrap, names.topics["predictions"])
    assert len(served) == keys * len(rounds)
    assert check_oracle(rounds, served) == keys * (len(rounds) - 1)
    for worker, n in zip((a, b), owns, strict=True):
        scraped = worker.metrics()
        assert scraped["stream_app_labels_learned_total"] == n * len(rounds)  # its keys', once
        assert scraped.get("stream_app_labels_forwarded_total", 0) == 0
        assert scraped["stream_app_model_keys"] == n
        rejected = {k: v for k, v in scraped.items() if k.startswith("stream_app_labels_rejected")}
        assert not any(rejected.values()), rejected
