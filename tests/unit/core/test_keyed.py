"""Keyed models without a broker: keys, the LRU with write-back, fallback, checkpoint timing."""

from __future__ import annotations

import random
from typing import Any

import pytest
from river import linear_model, optim, preprocessing

from stream_app import reasons
from stream_app.core.example import LabeledExample
from stream_app.core.keyed import MAX_MODEL_KEY_CHARS, KeyedModels, KeyState, model_key
from stream_app.core.learn import Learner
from stream_app.core.predict import Prediction
from stream_app.errors import ConfigError, RejectedMessage
from stream_app.registry.records import decode_blob, encode_blob
from stream_app.settings import Settings

PLAIN = Settings().replace(
    guard={"enabled": False},
    drift={"policy": "none"},
    model={"factory": "tests.unit.core.test_keyed:plain_lr"},
)


def plain_lr() -> Any:
    """The factory the oracle copies: scaler and logistic regression, no string handling."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optim.SGD(0.05))


class Store:
    """An in-memory stand-in for the keyed-models topic: checkpoints as real registry blobs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.blobs: dict[str, Any] = {}
        self.writes: list[str] = []

    def load(self, key: str) -> Learner | None:
        blob = self.blobs.get(key)
        if blob is None:
            return None
        state = decode_blob(blob.chunks, blob.sha256)
        return Learner.restore(self.settings, state, 0)

    def write_back(self, key: str, state: KeyState) -> None:
        self.blobs[key] = encode_blob(state.learner.snapshot(), chunk_bytes=1 << 20)
        self.writes.append(key)


def keyed(settings: Settings, store: Store) -> KeyedModels:
    return KeyedModels(settings, store.load, store.write_back)


def learn(keys: KeyedModels, key: str, i: int, x: dict[str, Any], y: bool) -> Prediction:
    """Predict then learn one event of ``key`` as the pipeline will; return the served answer."""
    answer = keys.answer(key, x, partition=0, now=float(i), fallback=None)
    state = keys.get(key, 0, float(i))
    outcome = state.learner.learn(
        LabeledExample(f"{key}-{i}", x, y, answer.served, answer.shadow, float(i))
    )
    assert outcome.learned
    keys.learned(key)
    return answer.served


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        ({}, "has no user"),
        ({"user": None}, "has no user"),
        ({"user": 17}, "JSON number"),
        ({"user": ["a"]}, "JSON array"),
        ({"user": ""}, "0 characters"),
        ({"user": "u" * (MAX_MODEL_KEY_CHARS + 1)}, f"{MAX_MODEL_KEY_CHARS + 1} characters"),
    ],
)
def test_a_missing_or_invalid_key_is_refused_with_its_reason(
    event: dict[str, Any], detail: str
) -> None:
    with pytest.raises(RejectedMessage, match=detail) as refused:
        model_key(event, "user")
    assert refused.value.reason == reasons.INVALID_MODEL_KEY


def test_a_key_of_the_longest_allowed_length_is_taken() -> None:
    assert model_key({"user": "u" * MAX_MODEL_KEY_CHARS}, "user") == "u" * MAX_MODEL_KEY_CHARS


def test_each_key_learns_exactly_as_rivers_own_loop_over_its_events() -> None:
    rng = random.Random(11)
    keys = keyed(PLAIN.replace(model={"key_cache": 3}), Store(PLAIN))  # evictions on the way
    oracle: dict[str, Any] = {}
    compared = 0
    for i in range(3000):
        key = f"k{rng.randrange(8)}"
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
        y = (x["a"] + (0.5 if key < "k4" else -0.5) * x["b"]) > 0
        model = oracle.setdefault(key, plain_lr())
        expected = model.predict_proba_one(x)
        served = learn(keys, key, i, x, y)
        model.learn_one(x, y)
        if served.proba:  # a key's first event: no class is known yet, so no probabilities
            got = {k: served.proba[str(k).lower()] for k in expected}
            assert got == pytest.approx(expected, abs=1e-9), (i, key)
            compared += 1
    assert compared == 3000 - 8 and len(keys) == 3


def test_an_evicted_key_is_written_back_and_answers_the_same_when_reloaded() -> None:
    store = Store(PLAIN)
    keys = keyed(PLAIN.replace(model={"key_cache": 2}), store)
    rng = random.Random(3)
    for i in range(200):
        learn(keys, "a", i, {"a": rng.gauss(0, 1), "b": 1.0}, rng.random() < 0.7)
    probe = {"a": 0.3, "b": 1.0}
    before = keys.answer("a", probe, 0, 200.0, None).served
    learn(keys, "b", 201, probe, True)
    assert store.writes == []  # two keys fit
    learn(keys, "c", 202, probe, True)  # "a" is the least recently used: out it goes
    assert "a" not in keys and store.writes == ["a"]
    assert keys.answer("a", probe, 0, 203.0, None).served == before  # loaded back: same answer
    assert store.writes == ["a", "b"]  # and "b" made room, written back because it learned


def test_a_clean_key_is_dropped_without_a_write() -> None:
    store = Store(PLAIN)
    keys = keyed(PLAIN.replace(model={"key_cache": 1}), store)
    learn(keys, "a", 0, {"a": 1.0}, True)
    keys.checkpointed("a", 0.0)
    keys.get("b", 0, 1.0)
    assert "a" not in keys and store.writes == []


def test_a_young_key_is_answered_by_the_fallback_until_it_has_learned_enough() -> None:
    settings = PLAIN.replace(model={"key_min_examples": 5})
    keys = keyed(settings, Store(settings))
    fallback = Learner(settings)
    answers = []
    for i in range(7):
        x = {"a": float(i)}
        answer = keys.answer("u", x, 0, float(i), fallback)
        answers.append(answer.fallback)
        keys.get("u", 0, float(i)).learner.learn(
            LabeledExample(f"e{i}", x, True, answer.served, None, float(i))
        )
        keys.learned("u")
    assert answers == [True] * 5 + [False] * 2
    assert fallback.serving.model.examples_learned == 0  # the key's labels teach the key


def test_without_a_fallback_a_young_key_answers_for_itself() -> None:
    keys = keyed(PLAIN, Store(PLAIN))
    assert keys.answer("u", {"a": 1.0}, 0, 0.0, None).fallback is False


def test_checkpoints_come_due_by_count_or_by_age_and_only_for_dirty_keys() -> None:
    settings = PLAIN.replace(
        registry={"key_checkpoint_every_examples": 3, "key_checkpoint_every_s": 10.0}
    )
    keys = keyed(settings, Store(settings))
    for i in range(3):
        learn(keys, "busy", i, {"a": float(i)}, True)
    learn(keys, "quiet", 3, {"a": 1.0}, False)
    keys.get("idle", 0, 0.0)
    assert keys.due(now=5.0) == ["busy"]
    keys.checkpointed("busy", 5.0)
    assert keys.due(now=5.0) == []
    assert keys.due(now=13.0) == ["quiet"]  # made at 3.0, one label, 10 s later


def test_releasing_partitions_drops_their_keys_and_returns_the_dirty_ones() -> None:
    keys = keyed(PLAIN, Store(PLAIN))
    keys.get("p0-clean", 0, 0.0)
    keys.get("p1-clean", 1, 0.0)
    keys.answer("p1-dirty", {"a": 1.0}, 1, 0.0, None)
    state = keys.get("p1-dirty", 1, 0.0)
    state.learner.learn(LabeledExample("e", {"a": 1.0}, True, Prediction(None, {}), None, 0.0))
    keys.learned("p1-dirty")
    released = keys.release([1])
    assert [key for key, _ in released] == ["p1-dirty"]
    assert [key for key, _ in keys.items()] == ["p0-clean"]


def test_an_unknown_fallback_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="key_fallback"):
        Settings().replace(model={"key_fallback": "nearest"})
