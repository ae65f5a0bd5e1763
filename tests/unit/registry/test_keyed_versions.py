"""Keyed models' versions as messages: round trip, signatures, refusals, the partition's index."""

from __future__ import annotations

import pickle
import zlib
from typing import Any

import orjson
import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.predict import Prediction
from stream_app.errors import CorruptVersion
from stream_app.registry.keyed import (
    FORMAT,
    VALUES_KEPT,
    KeyIndex,
    decode_version,
    encode_version,
    record_key,
    tombstones,
)
from stream_app.settings import Settings

SETTINGS = Settings().replace(guard={"enabled": False})


def trained(n: int = 40) -> Learner:
    learner = Learner(SETTINGS)
    for i in range(n):
        x = {"a": float(i % 7), "b": float(i % 3)}
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"e{i}", x, i % 7 > 3, served, shadow, 0.0))
    return learner


def test_a_version_round_trips_and_answers_exactly_as_before() -> None:
    learner = trained()
    _, value = encode_version(SETTINGS, "user-1", 4, learner, "checkpoint", at=12.5)
    header, loaded = decode_version(SETTINGS, value)
    assert header | {"sha256": "", "signature": ""} == {
        "format": FORMAT,
        "model": "default",
        "key": "user-1",
        "version": 4,
        "examples_learned": 40,
        "quality": {"metric": "accuracy", "value": learner.serving.quality.value, "window": 39},
        "reason": "checkpoint",
        "at": 12.5,
        "sha256": "",
        "signature": "",
    }
    probe = {"a": 2.0, "b": 1.0}
    assert loaded.answer(probe) == learner.answer(probe)
    assert loaded.allocate_version(-1) == 5  # the next version of this key comes after it


def test_a_tampered_state_is_refused_before_anything_is_unpickled() -> None:
    _, value = encode_version(SETTINGS, "k", 1, trained(), "checkpoint", at=0.0)
    head, _, state = value.partition(b"\n")
    evil = zlib.compress(pickle.dumps(Prediction(None, {})))  # any other pickle
    with pytest.raises(CorruptVersion, match="checksum"):
        decode_version(SETTINGS, head + b"\n" + evil)
    with pytest.raises(CorruptVersion, match="JSON header"):
        decode_version(SETTINGS, b"garbage")
    with pytest.raises(CorruptVersion, match="format"):
        decode_version(SETTINGS, orjson.dumps({"format": "x/1"}) + b"\n" + state)


def test_with_a_signing_key_only_signed_versions_load() -> None:
    signed = SETTINGS.replace(registry={"signing_key": "k" * 32})
    _, unsigned = encode_version(SETTINGS, "k", 1, trained(), "checkpoint", at=0.0)
    with pytest.raises(CorruptVersion) as refused:
        decode_version(signed, unsigned)
    assert refused.value.reason == "unsigned"
    _, value = encode_version(signed, "k", 2, trained(), "checkpoint", at=0.0)
    assert decode_version(signed, value)[0]["version"] == 2
    other = SETTINGS.replace(registry={"signing_key": "o" * 32})
    with pytest.raises(CorruptVersion) as refused:
        decode_version(other, value)
    assert refused.value.reason == "bad_signature"


def test_the_index_follows_the_topic_and_tombstones_keep_the_newest() -> None:
    index = KeyIndex()
    for version in range(1, 6):
        index.apply(record_key("a/b", version), f"a{version}".encode())
    index.apply(record_key("c", 1), b"c1")
    assert index.versions("a/b") == [1, 2, 3, 4, 5] and index.value("a/b") == b"a5"
    doomed = tombstones(index, "a/b", keep_last=2)
    assert doomed == [record_key("a/b", 1), record_key("a/b", 2)]
    for raw in doomed:
        index.apply(raw, None)
    assert index.versions("a/b") == [3, 4, 5] and index.value("a/b", 4) == b"a4"
    assert index.value("a/b", 3) is None  # stored, but only the newest values are held
    index.apply(record_key("c", 1), None)
    assert "c" not in index and sorted(index.keys()) == ["a/b"]
    with pytest.raises(CorruptVersion, match="record key"):
        index.apply(b"c", b"x")


def test_a_keys_challenger_is_stored_with_it_and_goes_on_with_its_duel() -> None:
    """A key's version holds its challenger and their duel, signed and read by the safe unpickler:
    the loaded learner answers, duels and promotes exactly as the one that was never stored."""
    settings = SETTINGS.replace(registry={"signing_key": "k" * 32}, drift={"challenger_window": 30})
    learner = Learner(settings)
    examples = [
        ({"a": float(i % 7), "b": float(i % 3)}, (i % 7 > 3) != (i < 100)) for i in range(300)
    ]

    def learn(on: Learner, start: int, stop: int) -> list[tuple[str, Any]]:
        happened = []
        for i in range(start, stop):
            x, y = examples[i]
            served, shadow = on.answer(x)
            outcome = on.learn(LabeledExample(f"e{i}", x, y, served, shadow, 0.0))
            happened += [(e.kind, served.proba, shadow and shadow.proba) for e in outcome.events]
            happened.append(("answer", served.proba, shadow and shadow.proba))
        return happened

    learn(learner, 0, 100)  # the serving model learns a concept that then changes
    learner.challenge(learner._fresh())
    learn(learner, 100, 120)  # the duel's window is not full yet
    _, value = encode_version(settings, "user-1", 4, learner, "checkpoint", at=1.0)
    _, loaded = decode_version(settings, value)
    assert loaded.challenger is not None and loaded.challenger.labels == 20
    after = learn(loaded, 120, 300)
    assert after == learn(learner, 120, 300)
    assert [kind for kind, _, _ in after if kind != "answer"] == ["promotion"]
    assert learner.challenger is None and loaded.challenger is None  # both promoted it, alike
    assert loaded.serving.model.version == learner.serving.model.version


def test_the_index_holds_the_newest_values_only_however_many_versions_it_reads() -> None:
    """A restore reads every version the topic still has: the index keeps numbers, not values."""
    index = KeyIndex()
    for version in range(1, 1001):
        index.apply(record_key("k", version), bytes(1000))
        index.apply(record_key("other", version), bytes(1000))
    held = sum(len(v) for v in index._values.values())  # type: ignore[attr-defined]
    assert held == 2 * VALUES_KEPT * 1000  # not 2 MB
    assert index.versions("k") == list(range(1, 1001))
    assert [index.value("k", v) is not None for v in (999, 1000, 998)] == [True, True, False]
    doomed = tombstones(index, "k", keep_last=10)  # keep_last still counts every version
    assert doomed == [record_key("k", v) for v in range(1, 990)]
    index.apply(record_key("k", 5), b"late")  # an old version written late: no value held
    assert index.value("k", 5) is None and 5 in index.versions("k")
    index.apply(record_key("k", 1000), None)  # the newest deleted: the one before it is held
    assert index.versions("k")[-1] == 999 and index.value("k") is not None
