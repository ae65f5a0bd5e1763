"""Keyed models under failure and rescaling, on the real broker.

A SIGKILL, a worker joining and one leaving, and evictions from a small cache all move or reload
keys' models; each key's predictions must still be River's own loop over what the key learned:

- a clean handover (a rebalance, a stop, an eviction) checkpoints the key as it stands, so its
  predictions equal River's loop over all its events, in order, across every move;
- a SIGKILL loses what the key learned after its last stored version: the successor goes on from
  that version (its ``model_version``, the ids it learned) and learns no label twice.

The oracle (:func:`replay`) reads the predictions topic partition by partition in order (a key's
events, predictions and versions share its home partition): an event served twice is learned the
first time only, as the service's duplicate check does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.core.route import home_partition
from stream_app.models import logistic_regression
from stream_app.registry.keyed import decode_version, split_record_key
from stream_app.settings import Settings
from tests.integration.conftest import Kafka, Names, WorkerFactory
from tests.integration.support import (
    WorkerProcess,
    end_offsets,
    produce,
    read_all,
    wait_consumed,
    wait_for,
)
from tests.integration.test_keyed import KEYED, PARTITIONS, Event, events, labels, traffic
from tests.integration.test_scaling import partitions

EVERY = 2
"""registry.key_checkpoint_every_examples: every key has several versions before the kill."""
CACHE = 5
"""model.key_cache of the eviction test."""
NEVER_S = 3600.0
"""serve.commit_interval_s of the worker to kill: it commits nothing before it dies."""
CHECKPOINTS = (
    f"[registry]\nkey_checkpoint_every_examples = {EVERY}\nkey_checkpoint_every_s = 3600.0\n"
)


@dataclass(frozen=True)
class Resume:
    """Where a key moved by a SIGKILL goes on: its last version stored before the kill."""

    after: float
    """The kill's clock time: a prediction served later came from the successor."""
    version: int
    learned: frozenset[str]
    """The event ids the version had learned (its duplicate check's memory)."""


@dataclass
class Replayed:
    """What :func:`replay` found: River's loop per key, and how much it compared and learned."""

    compared: int
    learned: dict[str, set[str]]
    """key -> ids its models learned (the successor's, for a key moved by a SIGKILL)."""
    learned_after: dict[str, int]
    """key -> labels learned by the successor after the kill (moved keys)."""
    served: set[str]
    repeated: list[float]
    """When each event whose label its key had learned already was served again."""


def replay(
    records: list[Any], rounds: list[list[Event]], resumes: dict[str, Resume] | None = None
) -> Replayed:
    """Hold every prediction, in partition order, to River's loop over what its key learned.

    A key in ``resumes`` restarts, at its first prediction served after the kill, from River's
    loop over the ids its last stored version learned, and must answer with that version.
    """
    data = {event_id: (key, x, y) for batch in rounds for event_id, key, x, y in batch}
    order = {event_id: i for i, event_id in enumerate(data)}
    resumes = resumes or {}
    models: dict[str, Any] = {}
    learned: dict[str, set[str]] = defaultdict(set)
    learned_after: dict[str, int] = defaultdict(int)
    resumed: set[str] = set()
    compared, served, repeated = 0, set(), []
    for record in records:
        body = orjson.loads(record.value)
        event_id = body["id"]
        key, x, y = data[event_id]
        assert body["model_key"] == key and "fallback" not in body, body
        served.add(event_id)
        resume = resumes.get(key)
        if resume is not None and key not in resumed and body["served_at"] > resume.after:
            resumed.add(key)
            assert body["model_version"] == resume.version, (body, resume)
            models[key] = logistic_regression()
            for done in sorted(resume.learned, key=order.__getitem__):
                models[key].learn_one(data[done][1], data[done][2])
            learned[key] = set(resume.learned)
        model = models.setdefault(key, logistic_regression())
        if not learned[key]:
            assert body["prediction"] is None, body  # nothing learned yet: no opinion
        else:
            proba = model.predict_proba_one(x)
            assert abs(body["proba"]["true"] - proba[True]) <= 1e-9, (body, key)
            assert abs(body["proba"]["false"] - proba[False]) <= 1e-9, (body, key)
            compared += 1
        if event_id not in learned[key]:  # a label served twice is learned once
            model.learn_one(x, y)
            learned[key].add(event_id)
            if key in resumed:
                learned_after[key] += 1
        else:
            repeated.append(body["served_at"])
    return Replayed(compared, dict(learned), dict(learned_after), served, repeated)


async def versions(kafka: Kafka, names: Names) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Every key's stored versions, oldest first: (header, learner), decoded as a worker does."""
    settings = Settings()
    out: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    for record in await read_all(kafka.bootstrap, f"{names.app_id}-keyed-models"):
        if record.value is not None:
            key, _ = split_record_key(record.key)
            out[key].append(decode_version(settings, record.value))
    return out


def learned_ids(learner: Any) -> frozenset[str]:
    """The event ids a stored learner remembers learning (its duplicate check)."""
    return frozenset(learner._learned._seen)


async def split(*workers: WorkerProcess) -> bool:
    """Tell whether ``workers`` share the partitions, each serving some."""
    owned = [partitions(worker) for worker in workers]
    served = sorted(partition for mine in owned for partition in mine)
    return served == list(range(PARTITIONS)) and all(owned)


async def test_sigkill_one_of_two_workers_moved_keys_resume_from_their_last_version(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """The victim serves, learns and checkpoints but never commits (a commit interval of an hour):
    its successor is handed every event of the moved keys again, from the first.

    So the labels its last versions learned are refused as learned already, the ones after them
    (learned, not stored) are learned again, and none is lost or learned twice. The kill comes
    when the victim has served what it was sent, wherever its batches ended. The last round
    before the kill waits for delayed labels, sent after it: the survivor must hold the moved
    keys' events it serves again until their labels come (or take a label come early).
    """
    victim = worker_factory(
        partitions=PARTITIONS,
        extra_config=KEYED + CHECKPOINTS,
        env={"STREAM_APP_SERVE__COMMIT_INTERVAL_S": str(NEVER_S)},
    )
    victim.wait_healthy()
    survivor = worker_factory(partitions=PARTITIONS, extra_config=KEYED + CHECKPOINTS)
    await wait_for(lambda: split(victim, survivor), timeout=90, what="the partitions to be split")
    lost_partitions = partitions(victim)
    keys, before_kill = 40, 9
    rounds = traffic(keys, 14, seed=41)
    all_keys = [f"user-{k}" for k in range(keys)]
    moved = {key for key in all_keys if home_partition(key, PARTITIONS) in lost_partitions}
    group, features = f"{names.app_id}-serve", names.topics["features"]
    predictions = names.topics["predictions"]
    for i, batch in enumerate(rounds[:before_kill]):
        await produce(kafka.bootstrap, features, events(batch, inline=i < before_kill - 1))

    async def all_served() -> bool:  # once each: no rebalance yet
        return await served_on(kafka, predictions, range(PARTITIONS)) >= keys * before_kill

    await wait_for(all_served, what="the events before the kill to be served")
    victim.kill()
    killed_at = time.time()
    await produce(kafka.bootstrap, names.topics["labels"], labels(rounds[before_kill - 1]))
    await wait_consumed(kafka.bootstrap, group, names.topics["labels"], timeout=90)
    await wait_consumed(kafka.bootstrap, group, features, timeout=90)  # (early labels: joined)
    for batch in rounds[before_kill:]:
        await produce(kafka.bootstrap, features, events(batch, inline=True))
    await wait_consumed(kafka.bootstrap, group, features, timeout=90)
    scraped = survivor.metrics()
    assert survivor.stop() == 0  # a clean stop stores every dirty key

    stored = await versions(kafka, names)
    resumes = {}
    for key in moved:
        before = [(h, learner) for h, learner in stored[key] if h["at"] < killed_at]
        header, learner = before[-1]
        ids = learned_ids(learner)
        assert len(ids) == header["examples_learned"] <= before_kill
        resumes[key] = Resume(killed_at, header["version"], ids)
    records = await read_all(kafka.bootstrap, predictions)
    found = replay(records, rounds, resumes)
    assert found.served == {event_id for batch in rounds for event_id, *_ in batch}
    assert found.compared == len(records) - len(all_keys)  # each key's first event: no opinion
    twice = len(records) - len(found.served)
    refused = scraped.get('stream_app_labels_rejected_total{reason="duplicate_label"}', 0)
    assert refused == sum(at > killed_at for at in found.repeated) > 0  # as the oracle says
    assert all(len(found.learned[key]) == len(rounds) for key in all_keys)  # none lost
    by_survivor = sum(found.learned_after.values()) + sum(
        len(found.learned[key]) for key in all_keys if key not in moved
    )
    assert scraped["stream_app_labels_learned_total"] == by_survivor  # each label once
    for key, history in stored.items():
        header, learner = history[-1]
        assert header["examples_learned"] == len(rounds)  # never a label twice
        assert learned_ids(learner) == found.learned[key]
    print(
        f"\nSIGKILL: {len(moved)} of {keys} keys moved, {twice} events served twice,"
        f" {refused:.0f} labels refused as learned already, none learned twice or lost"
    )


async def served_on(kafka: Kafka, topic: str, wanted: Iterable[int]) -> int:
    """How many predictions the ``wanted`` partitions of ``topic`` hold now."""
    ends = await end_offsets(kafka.bootstrap, topic)
    return sum(end for tp, end in ends.items() if tp.partition in set(wanted))


async def test_scaling_out_and_in_moves_keys_and_each_stays_rivers_own_loop(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory
) -> None:
    """1 worker, then 2 (half the keys move to the second), then the first stops cleanly (the
    rest move): every rebalance hands over every dirty key, so each key goes on exactly."""
    keys = 40
    rounds = traffic(keys, 400, seed=43)  # more than the test needs
    a = worker_factory(partitions=PARTITIONS, extra_config=KEYED)
    a.wait_healthy()
    sent = 0
    done = asyncio.Event()
    features = names.topics["features"]

    async def keep_producing() -> None:
        """One round of every key at a time, a steady stream that the rebalances land in."""
        nonlocal sent
        while not done.is_set() and sent < len(rounds):
            await produce(kafka.bootstrap, features, events(rounds[sent], inline=True))
            sent += 1
            await asyncio.sleep(0.1)  # the offered rate, not a wait for a condition

    producer = asyncio.create_task(keep_producing())

    async def rounds_sent(count: int) -> bool:
        assert not producer.done() or sent == len(rounds), producer
        return sent >= count

    await wait_for(lambda: rounds_sent(3), what="the first rounds to be sent")
    b = worker_factory(partitions=PARTITIONS, extra_config=KEYED)

    await wait_for(lambda: split(a, b), timeout=90, what="the partitions to be split")

    async def b_served() -> bool:
        return b.metrics().get("stream_app_predictions_total", 0) > 0

    await wait_for(b_served, what="the second worker to serve its keys")
    assert a.stop() == 0  # scale in: a clean leave hands a's keys over

    async def b_has_all() -> bool:
        return sorted(partitions(b)) == list(range(PARTITIONS))

    await wait_for(b_has_all, what="the remaining worker to take every partition")
    at_scale_in = sent
    await wait_for(lambda: rounds_sent(at_scale_in + 2), what="rounds after the scale-in")
    done.set()
    await producer
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", features)
    sent_rounds = rounds[:sent]
    records = await read_all(kafka.bootstrap, names.topics["predictions"])
    found = replay(records, sent_rounds)
    assert found.served == {event_id for batch in sent_rounds for event_id, *_ in batch}
    assert all(len(found.learned[f"user-{k}"]) == sent for k in range(keys))
    assert b.stop() == 0
    stored = await versions(kafka, names)
    assert {key: history[-1][0]["examples_learned"] for key, history in stored.items()} == {
        f"user-{k}": sent for k in range(keys)
    }
    reasons = {h["reason"] for history in stored.values() for h, _ in history}
    assert "handover" in reasons, reasons
    print(f"\nscale out and in: {sent} rounds of {keys} keys, {len(records)} predictions")


@pytest.mark.parametrize("store", ["memory", "disk"])
async def test_lru_eviction_and_reload_through_kafka_keep_rivers_own_loop(
    kafka: Kafka, names: Names, worker_factory: WorkerFactory, store: str
) -> None:
    """With ``model.key_store = "disk"`` every reload reads the key's value from RocksDB."""
    config = KEYED + f"key_cache = {CACHE}\nkey_store = '{store}'\n"
    worker = worker_factory(partitions=PARTITIONS, extra_config=config)
    worker.wait_healthy()
    on_disk = Path(worker.env["STREAM_APP_DATA_DIR"]) / "keyed" / names.app_id
    assert on_disk.is_dir() == (store == "disk")
    keys = 30
    homes = Counter(home_partition(f"user-{k}", PARTITIONS) for k in range(keys))
    assert min(homes.values()) > CACHE  # so each key leaves memory between two of its events
    rounds = traffic(keys, 6, seed=47)
    features = names.topics["features"]
    for batch in rounds:
        await produce(kafka.bootstrap, features, events(batch, inline=True))
    await wait_consumed(kafka.bootstrap, f"{names.app_id}-serve", features)
    scraped = worker.metrics()
    assert scraped["stream_app_model_keys"] <= CACHE
    records = await read_all(kafka.bootstrap, names.topics["predictions"])
    found = replay(records, rounds)
    assert len(records) == len(found.served) == keys * len(rounds)  # none served twice
    assert found.compared == keys * (len(rounds) - 1)
    assert worker.stop() == 0
    stored = await versions(kafka, names)
    evicted = sum(h["reason"] == "evicted" for history in stored.values() for h, _ in history)
    assert evicted >= keys * (len(rounds) - 1)  # each key, after each of its events but the last
    assert {key: history[-1][0]["examples_learned"] for key, history in stored.items()} == {
        f"user-{k}": len(rounds) for k in range(keys)
    }
