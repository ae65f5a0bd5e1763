"""Rollback and reset of one key, carried out by its owner, without a broker."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.route import home_partition
from stream_app.errors import OperationRefused
from stream_app.registry.keyed import KeyIndex, decode_version, read_header
from stream_app.settings import Settings
from stream_app.worker.key_commands import carry_out, encode_key_command, parse_key_command
from stream_app.worker.keyed_store import KeyedStore
from tests.unit.core.test_keyed_path import keyed_event
from tests.unit.core.test_pipeline import Rec, Recorder

PARTITIONS = 4
SETTINGS = Settings().replace(
    guard={"enabled": False},
    drift={"policy": "none"},
    model={"key_field": "user", "key_fallback": "none", "key_min_examples": 1},
)
PROBE = {"a": 0.3, "b": -1.2}


def owner(owned: set[int] | None = None) -> tuple[Pipeline, KeyedStore]:
    """A pipeline serving keys from a KeyedStore that owns ``owned`` (default: every partition)."""
    pipeline = Pipeline(SETTINGS, Learner(SETTINGS), Metrics())
    pipeline.partitions = pipeline.output_partitions = PARTITIONS
    store = KeyedStore(SETTINGS, Metrics(), PARTITIONS)
    store._indexes = {p: KeyIndex() for p in (range(PARTITIONS) if owned is None else owned)}
    pipeline.use_keys(store)
    return pipeline, store


def teach(pipeline: Pipeline, key: str, n: int, seed: int, start: int = 0) -> None:
    rng = random.Random(seed)
    records = []
    for i in range(start, start + n):
        x = {"a": rng.uniform(-2, 2), "b": rng.uniform(-2, 2)}
        records.append(keyed_event(i, key, x, label=x["a"] > x["b"]))
    pipeline.features(records, 0.0, Recorder())


def command(op: str, key: str, version: int | None = None, offset: int = 0) -> Rec:
    value = encode_key_command(op, key, version, "default", f"r-{offset}")
    return Rec("key-commands", home_partition(key, PARTITIONS), offset, key.encode(), value)


def answers(out: Recorder) -> list[dict[str, Any]]:
    return out.on(SETTINGS.topics.model_events)


def live(pipeline: Pipeline, key: str) -> Any:
    assert pipeline.keys is not None
    state = pipeline.keys.peek(key)
    assert state is not None
    return state.learner


def test_a_rollback_makes_the_stored_version_live_at_once_and_stores_it_as_a_new_one() -> None:
    pipeline, store = owner()
    teach(pipeline, "user-1", 20, seed=1)
    teach(pipeline, "user-2", 20, seed=2, start=100)
    pipeline.release_keys(range(PARTITIONS), 0.0)  # a version of each key, stored
    home = home_partition("user-1", PARTITIONS)
    [first] = store._indexes[home].versions("user-1")
    value = store.stored("user-1", first)
    assert value is not None
    _, then = decode_version(SETTINGS, value)
    teach(pipeline, "user-1", 30, seed=3, start=200)
    teach(pipeline, "user-2", 1, seed=4, start=300)
    other = live(pipeline, "user-2").answer(PROBE)
    assert live(pipeline, "user-1").answer(PROBE) != then.answer(PROBE)  # it learned since
    out = Recorder()
    carry_out(store, pipeline, [command("rollback", "user-1", first)], out)
    assert live(pipeline, "user-1").answer(PROBE) == then.answer(PROBE)
    assert live(pipeline, "user-2").answer(PROBE) == other
    [answer] = answers(out)
    assert answer["ok"] and answer["type"] == "rollback" and answer["model_key"] == "user-1"
    assert answer["from_version"] == first and answer["request_id"] == "r-0"
    made = answer["model_version"]
    stored = store.stored("user-1", made)
    assert made > first and stored is not None and read_header(stored)["reason"] == "rollback"
    _, reloaded = decode_version(SETTINGS, stored)  # what a restart serves
    assert reloaded.answer(PROBE) == then.answer(PROBE)
    queued = Recorder()
    store.queue(queued)  # type: ignore[arg-type]
    assert any(key == f"user-1/{made}".encode() for _, _, key, _ in queued.sent)


def test_a_reset_starts_the_key_over_from_a_fresh_model_and_leaves_other_keys_alone() -> None:
    pipeline, store = owner()
    teach(pipeline, "user-1", 20, seed=1)
    teach(pipeline, "user-2", 20, seed=2, start=100)
    other = live(pipeline, "user-2").answer(PROBE)
    out = Recorder()
    carry_out(store, pipeline, [command("reset", "user-1")], out)
    fresh = Learner(SETTINGS)
    assert live(pipeline, "user-1").answer(PROBE) == fresh.answer(PROBE)
    assert live(pipeline, "user-1").serving.model.examples_learned == 0
    assert live(pipeline, "user-2").answer(PROBE) == other
    [answer] = answers(out)
    assert answer["ok"] and answer["from_version"] is None
    stored = store.stored("user-1", answer["model_version"])
    assert stored is not None and read_header(stored)["reason"] == "reset"
    assert pipeline.keys is not None and not pipeline.keys.peek("user-1").dirty  # type: ignore[union-attr]


def test_a_version_not_stored_or_a_key_not_owned_is_refused_and_changes_nothing() -> None:
    home = home_partition("user-1", PARTITIONS)
    pipeline, store = owner({p for p in range(PARTITIONS) if p != home})
    out = Recorder()
    carry_out(store, pipeline, [command("reset", "user-1")], out)
    [refused] = answers(out)
    assert not refused["ok"] and "does not own" in refused["error"]
    pipeline, store = owner()
    teach(pipeline, "user-1", 5, seed=1)
    before = live(pipeline, "user-1").answer(PROBE)
    out = Recorder()
    carry_out(store, pipeline, [command("rollback", "user-1", 7)], out)
    [refused] = answers(out)
    assert not refused["ok"] and "no stored version 7" in refused["error"]
    assert live(pipeline, "user-1").answer(PROBE) == before


def test_a_malformed_command_is_skipped() -> None:
    pipeline, store = owner()
    out = Recorder()
    bad = Rec("key-commands", 0, 0, b"k", orjson.dumps({"op": "reset", "key": 7}))
    carry_out(store, pipeline, [bad], out)
    assert out.sent == []
    with pytest.raises(OperationRefused, match="is a JSON number"):
        parse_key_command(bad.value)
