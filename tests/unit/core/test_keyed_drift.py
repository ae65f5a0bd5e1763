"""Drift per key without a broker: each key's own monitor, challenger, reset and model events.

A few keys of a keyed SEA stream change concept (after ``CHANGE_AT`` of their events their label
becomes the complement of SEA's function); the others do not. The oracle is River's own
predict-then-learn loop per key, switched to a fresh model where the key's model events say a
challenger started (it learns from the next label) and took over, or the key was reset.
"""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from river.datasets import synth

from stream_app.core.canary import CANARY_DONE, CANARY_STEP, bucket
from stream_app.core.events import CHALLENGER_STARTED
from stream_app.core.pipeline import Pipeline
from tests.unit.core.test_keyed import plain_lr
from tests.unit.core.test_keyed_path import keyed_event, keyed_pipeline
from tests.unit.core.test_pipeline import Recorder

KEYS = [f"k{i}" for i in range(6)]
CHANGING = {"k1", "k4"}
CHANGE_AT = 900
PER_KEY = 1800
DRIFT = {"warmup": 200, "compare_window": 100, "challenger_window": 200}


def keyed_sea(seed: int = 7) -> list[tuple[str, dict[str, float], bool]]:
    """Each key's own SEA stream, interleaved at random; the changing keys' label flips."""
    streams = {}
    for n, key in enumerate(KEYS):
        sea = synth.SEA(variant=0, seed=seed + n).take(PER_KEY)
        data = [({f"x{k}": v for k, v in x.items()}, y) for x, y in sea]
        if key in CHANGING:
            data = data[:CHANGE_AT] + [(x, not y) for x, y in data[CHANGE_AT:]]
        streams[key] = iter(data)
    order = [key for key in KEYS for _ in range(PER_KEY)]
    random.Random(seed).shuffle(order)
    return [(key, *next(streams[key])) for key in order]


class Oracle:
    """River's loop for one key: a serving model, and a challenger while the key has one."""

    def __init__(self) -> None:
        self.serving: Any = plain_lr()
        self.challenger: Any = None
        self.share = 0.0
        """The canary's share of the events while one runs (by id hash, as the contract says)."""

    def answering(self, event_id: str) -> Any:
        """The model whose answer is given: the serving one, or the canary for its share."""
        return self.challenger if bucket(event_id) < self.share else self.serving

    def learn(self, x: dict[str, float], y: bool, events: list[dict[str, Any]]) -> None:
        """Learn as the key's learner does, then follow its model events for this label."""
        self.serving.learn_one(x, y)
        if self.challenger is not None:
            self.challenger.learn_one(x, y)
        for event in events:
            kind = event["type"]
            if kind == "promotion" and event["reason"] == "reset":
                self.serving = plain_lr()  # a fresh model that has not learned this label
            elif kind == "promotion":
                self.serving, self.challenger, self.share = self.challenger, None, 0.0
            elif kind == CHALLENGER_STARTED:
                self.challenger = plain_lr()  # learns from the next label on
            elif kind == CANARY_STEP:
                self.share = event["share"]


def run(p: Pipeline) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """Stream the keyed SEA; hold every answer (and shadow answer) to the oracle.

    Returns the model events, how many answers were compared, and the shadow answers per key.
    """
    oracle = {key: Oracle() for key in KEYS}
    events: list[dict[str, Any]] = []
    compared = 0
    shadowed: dict[str, int] = {}
    for i, (key, x, y) in enumerate(keyed_sea()):
        out = Recorder()
        p.features([keyed_event(i, key, x, y)], 0.0, out)
        p.checkpoint_keys(float(i))
        (prediction,) = out.on(p.settings.topics.predictions)
        expected = oracle[key].answering(f"e{i}").predict_proba_one(x)
        if prediction["proba"]:
            got = {k: prediction["proba"][str(k).lower()] for k in expected}
            assert got == pytest.approx(expected, abs=1e-9), (i, key)
            compared += 1
        shadows = out.on(p.settings.topics.predictions_shadow)
        assert len(shadows) == (oracle[key].challenger is not None), (i, key)
        for shadow in shadows:  # the key's challenger's answer, in shadow, with its key
            assert shadow["model_key"] == key and shadow["id"] == f"e{i}"
            proba = oracle[key].challenger.predict_proba_one(x)
            assert shadow["proba"] == {} or shadow["proba"]["true"] == pytest.approx(
                proba[True], abs=1e-9
            )
            shadowed[key] = shadowed.get(key, 0) + 1
        mine = out.on(p.settings.topics.model_events)
        events += [{**event, "at_event": i} for event in mine]
        assert all(e["model_key"] == key for e in mine)  # every event of this label is this key's
        oracle[key].learn(x, y, mine)
    return events, compared, shadowed


@pytest.mark.parametrize("key_cache", [100, 5])
def test_keys_that_change_concept_drift_and_promote_their_own_challengers(key_cache: int) -> None:
    p, metrics, store = keyed_pipeline(
        drift={"policy": "challenger", **DRIFT},
        model={"key_cache": key_cache},  # 5 of 6 keys: evictions, challengers and all
        registry={"key_checkpoint_every_examples": 37},
    )
    events, compared, shadowed = run(p)
    assert compared >= len(KEYS) * (PER_KEY - 2)  # a fresh model answers {} once per key
    by_key: dict[str, list[str]] = {}
    for event in events:
        by_key.setdefault(event["model_key"], []).append(event["type"])
    assert set(by_key) == CHANGING  # the keys that did not change have no event at all
    for key in CHANGING:
        assert by_key[key] == ["drift", CHALLENGER_STARTED, "promotion"], by_key[key]
        seen = {e["type"]: e["examples_seen"] for e in events if e["model_key"] == key}
        assert shadowed[key] == seen["promotion"] - seen["drift"] >= DRIFT["challenger_window"]
    assert set(shadowed) == CHANGING
    drifts = [e for e in events if e["type"] == "drift"]
    assert all(e["at_event"] > 0 and "young" not in e for e in drifts)
    for key in CHANGING:  # the promoted challenger was stored at once as the key's version
        assert "promotion" in [reason for _, _, reason in store.versions[key]]
    count = metrics.registry.get_sample_value
    for kind in ("drift", CHALLENGER_STARTED, "promotion"):
        assert count("stream_app_key_model_events_total", {"type": kind}) == len(CHANGING)
    assert count("stream_app_drift_detected_total") == len(CHANGING)
    if key_cache < len(KEYS):
        evicted = sum(r == "evicted" for held in store.versions.values() for _, _, r in held)
        assert evicted > 1000
        for key in CHANGING:  # written back and reloaded in the middle of its duel
            states = [pickle.loads(b) for _, b, r in store.versions[key] if r == "evicted"]
            assert any(state["challenger"] is not None for state in states)


def test_the_reset_policy_resets_only_the_key_that_drifted() -> None:
    p, metrics, store = keyed_pipeline(drift={"policy": "reset", **DRIFT})
    events, _, shadowed = run(p)
    assert shadowed == {}
    assert {e["model_key"] for e in events} == CHANGING
    for key in CHANGING:
        kinds = [(e["type"], e.get("reason")) for e in events if e["model_key"] == key]
        assert kinds[:2] == [("drift", None), ("promotion", "reset")]
        assert "reset" in [reason for _, _, reason in store.versions[key]]
    assert p.keys is not None
    for key in set(KEYS) - CHANGING:  # untouched: the model it started with learned every label
        state = p.keys.peek(key)
        assert state is not None and state.learner.serving.model.examples_learned == PER_KEY
    resets = metrics.registry.get_sample_value(
        "stream_app_key_model_events_total", {"type": "promotion"}
    )
    assert resets == sum(e["type"] == "promotion" for e in events) >= len(CHANGING)


def test_a_key_younger_than_key_min_examples_gets_no_challenger() -> None:
    p, metrics, _ = keyed_pipeline(
        drift={"policy": "challenger", **DRIFT}, model={"key_min_examples": 10 * PER_KEY}
    )
    events, _, _ = run(p)  # (key_fallback none: young keys answer for themselves)
    assert {e["model_key"] for e in events} == CHANGING
    assert {e["type"] for e in events} == {"drift"}
    assert all(e["young"] is True for e in events)
    assert p.keys is not None
    assert all(state.learner.challenger is None for _, state in p.keys.items())
    started = metrics.registry.get_sample_value(
        "stream_app_key_model_events_total", {"type": CHALLENGER_STARTED}
    )
    assert started is None


def test_each_key_has_its_own_guard() -> None:
    """The same input is an outlier for a key that never saw its like, and not for another."""
    p, metrics, _ = keyed_pipeline(
        guard={"enabled": True, "noisy_labels": False, "witness": False, "warmup": 100}
    )
    rng = random.Random(3)
    out = Recorder()
    for i in range(300):
        for key, centre in (("small", 0.0), ("big", 100.0)):
            x = {"x": rng.gauss(centre, 1.0)}
            p.features([keyed_event(2 * i + (key == "big"), key, x, x["x"] > centre)], 0.0, out)
    assert out.on(p.settings.topics.dead_letters) == []
    out = Recorder()
    p.features([keyed_event(1000, "small", {"x": 100.0}, True)], 0.0, out)
    p.features([keyed_event(1001, "big", {"x": 100.0}, True)], 0.0, out)
    (letter,) = out.on(p.settings.topics.dead_letters)
    assert letter["reason"] == "feature_outlier" and letter["source"]["offset"] == 1000
    assert p.keys is not None
    learned = {key: state.learner.serving.model.examples_learned for key, state in p.keys.items()}
    assert learned == {"small": 300, "big": 301}
    rejected = metrics.registry.get_sample_value(
        "stream_app_labels_rejected_total", {"reason": "feature_outlier"}
    )
    assert rejected == 1


class Raising:
    """An estimator whose every answer raises."""

    def predict_proba_one(self, x: dict[str, Any]) -> Any:
        raise ValueError("broken challenger")


def test_a_keys_challenger_that_raises_is_dropped_and_announced_with_its_key() -> None:
    p, metrics, _ = keyed_pipeline()
    out = Recorder()
    p.features([keyed_event(0, "u1", {"a": 1.0}, True)], 0.0, out)
    assert p.keys is not None
    learner = p.keys.get("u1", 0, 0.0).learner
    challenger = learner.challenge(learner._fresh()).model
    challenger.estimator, challenger.examples_learned = Raising(), 1  # (a fresh one never asks)
    p.features([keyed_event(1, "u1", {"a": 2.0}, False)], 0.0, out)
    (dropped,) = out.on(p.settings.topics.model_events)
    assert dropped["type"] == "challenger_dropped" and dropped["model_key"] == "u1"
    assert dropped["reason"] == "predict_error" and learner.challenger is None
    assert len(out.on(p.settings.topics.predictions)) == 2  # the key's model answered on
    count = metrics.registry.get_sample_value
    assert count("stream_app_challengers_dropped_total", {"reason": "predict_error"}) == 1
    assert count("stream_app_key_model_events_total", {"type": "challenger_dropped"}) == 1


def test_a_young_keys_monitor_judges_only_its_own_answers_not_the_fallbacks() -> None:
    """While the global model answers a young key, the key's quality, guard and drift monitor
    are not fed the global model's errors: they start with the key's own first answer."""
    p, _, _ = keyed_pipeline(fallback="global")  # key_min_examples 5
    out = Recorder()
    for i in range(9):
        p.features([keyed_event(i, "u1", {"a": float(i % 3)}, i % 2 == 0)], 0.0, out)
    fallback = [bool(m.get("fallback")) for m in out.on(p.settings.topics.predictions)]
    assert fallback == [True] * 5 + [False] * 4
    assert p.keys is not None
    learner = p.keys.get("u1", 0, 0.0).learner
    assert len(learner.serving.quality) == 4  # its own four answers, none of the fallback's
    assert learner.monitor._seen == 4
    assert learner.serving.model.examples_learned == 9 and p.learner.examples_seen == 9


def test_a_keys_winning_challenger_rolls_out_as_a_canary_on_its_share_of_the_keys_events() -> None:
    """``drift.promotion = "canary"``: the key's challenger answers its share, then takes over."""
    p, _, _ = keyed_pipeline(
        drift={"policy": "challenger", "promotion": "canary", **DRIFT},
        rollout={"steps": [0.5, 1.0], "window": 100},
    )
    events, compared, _ = run(p)  # the oracle gives the canary's answer on its share
    assert compared >= len(KEYS) * (PER_KEY - 2)
    for key in CHANGING:
        kinds = [e["type"] for e in events if e["model_key"] == key]
        assert kinds == ["drift", CHALLENGER_STARTED, CANARY_STEP, CANARY_DONE, "promotion"]
    assert {e["model_key"] for e in events} == CHANGING
