"""Batch inference of keyed events, against River's own loop (no broker)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from river import linear_model, optim

from stream_app import reasons
from stream_app.core.pipeline import Pipeline
from tests.unit.core.test_keyed import plain_lr
from tests.unit.core.test_keyed_path import keyed_event, keyed_pipeline
from tests.unit.core.test_pipeline import Rec, Recorder

MIN_EXAMPLES = 5
BATCH = 40


BOOM = 666.0


class Fragile(linear_model.LogisticRegression):
    """A logistic regression that raises on ``a == BOOM``, one event at a time or in a batch."""

    def predict_proba_one(self, x: dict[str, Any], **kwargs: Any) -> dict[Any, float]:
        if x.get("a") == BOOM:
            raise ValueError("boom")
        return dict(super().predict_proba_one(x, **kwargs))

    def predict_proba_many(self, X: Any) -> Any:  # (River names it X)
        if (X["a"] == BOOM).any():
            raise ValueError("boom")
        return super().predict_proba_many(X)


def fragile_lr() -> Any:
    return Fragile(optim.SGD(0.05))


def batch_pipeline(fallback: str = "global", **model: Any) -> Pipeline:
    p, _, _ = keyed_pipeline(
        fallback=fallback,
        model={"key_min_examples": MIN_EXAMPLES, **model},
        inference={"mode": "batch", "max_batch": BATCH, "many_min_rows": 3},
    )
    return p


def proba_of(model: Any, x: dict[str, float], learned: int) -> dict[str, float]:
    """River's answer as the prediction carries it; none from a model that learned nothing."""
    if not learned:
        return {}
    return {str(k).lower(): v for k, v in model.predict_proba_one(x).items()}


@pytest.mark.parametrize("cache", [10_000, 3])  # 3: keys are evicted and reloaded mid-batch
def test_batch_answers_are_rivers_one_by_one_answers_per_key_and_fallback(
    cache: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each key (and the global fallback for young keys) answers its group of a micro-batch as
    River answers event by event with the model as it stood at the batch's start; then the
    batch's inline labels are learned in order."""
    many = 0
    predict_proba_many = linear_model.LogisticRegression.predict_proba_many

    def counted(self: Any, X: Any) -> Any:  # (River names it X)
        nonlocal many
        many += 1
        return predict_proba_many(self, X=X)

    monkeypatch.setattr(linear_model.LogisticRegression, "predict_proba_many", counted)
    p = batch_pipeline(key_cache=cache)
    rng = random.Random(11)
    keys = [f"u{k}" for k in range(6)]
    own: dict[str, Any] = {key: plain_lr() for key in keys}
    learned = dict.fromkeys(keys, 0)
    glob, glob_learned = plain_lr(), 0
    compared = fallbacks = 0
    for b in range(12):
        rows = []
        for j in range(BATCH):
            key = keys[min(int(rng.expovariate(0.6)), len(keys) - 1)]  # hot and rare keys
            x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
            y = (x["a"] + (0.5 if key < "u3" else -0.5) * x["b"]) > 0
            rows.append((b * BATCH + j, key, x, y if rng.random() < 0.7 else None))
        out = Recorder()
        p.features([keyed_event(i, key, x, y) for i, key, x, y in rows], 0.0, out)
        predictions = out.on(p.settings.topics.predictions)
        assert [m["id"] for m in predictions] == [f"e{i}" for i, _, _, _ in rows]
        for (_, key, x, _), m in zip(rows, predictions, strict=True):
            young = learned[key] < MIN_EXAMPLES
            assert m["model_key"] == key and m.get("fallback", False) is young
            if young:
                fallbacks += 1
                expected = proba_of(glob, x, glob_learned)
            else:
                expected = proba_of(own[key], x, learned[key])
            assert m["proba"] == pytest.approx(expected, abs=1e-9), (b, key)
            compared += bool(expected)
        for _, key, x, y in rows:  # after the whole batch is answered: learn in order
            if y is not None:
                own[key].learn_one(x, y)
                learned[key] += 1
                glob.learn_one(x, y)
                glob_learned += 1
    assert compared > 300 and fallbacks >= MIN_EXAMPLES * len(keys)
    assert many > 0  # groups of at least many_min_rows were asked with one vectorised call
    assert p.keys is not None
    if cache == 10_000:
        assert {k: s.learner.serving.model.examples_learned for k, s in p.keys.items()} == learned


def test_a_keys_version_in_a_batch_prediction_is_the_one_that_answered() -> None:
    """A young key's events of one batch all come from the fallback, even after its labels."""
    p = batch_pipeline()
    out = Recorder()
    events = [keyed_event(i, "u1", {"a": float(i % 3)}, i % 2 == 0) for i in range(2 * BATCH)]
    p.features(events, 0.0, out)
    predictions = out.on(p.settings.topics.predictions)
    flags = [bool(m.get("fallback")) for m in predictions]
    assert flags == [True] * BATCH + [False] * BATCH  # young at the first batch's start only
    assert {m["model_version"] for m in predictions[:BATCH]} == {p.learner.answering.version}


def test_an_event_its_keys_model_raises_on_is_dead_lettered_and_the_rest_answered() -> None:
    p = batch_pipeline(fallback="none", factory="tests.unit.core.test_keyed_batch:fragile_lr")
    out = Recorder()
    p.features([keyed_event(i, "u1", {"a": 1.0}, True) for i in range(4)], 0.0, out)
    out = Recorder()
    batch = [keyed_event(10 + i, "u1", {"a": 2.0 + i}) for i in range(6)]
    bad = keyed_event(20, "u1", {"a": BOOM})
    p.features([*batch[:3], bad, *batch[3:]], 0.0, out)
    letters = out.on(p.settings.topics.dead_letters)
    assert [letter["reason"] for letter in letters] == [reasons.MODEL_ERROR]
    answered = [m["id"] for m in out.on(p.settings.topics.predictions)]
    assert answered == [f"e{10 + i}" for i in range(6)]


def test_learn_many_in_batch_mode_learns_each_keys_labels_after_the_batch() -> None:
    p, _, _ = keyed_pipeline(
        inference={"mode": "batch", "max_batch": BATCH, "learn_many": True},
    )
    out = Recorder()
    p.features([keyed_event(i, f"u{i % 2}", {"a": float(i)}, i > 3) for i in range(8)], 0, out)
    assert p.keys is not None
    for key in ("u0", "u1"):
        state = p.keys.peek(key)
        assert state is not None and state.learner.serving.deferred == []
        weights = state.learner.serving.model.estimator["LogisticRegression"].weights
        assert any(weights.values())  # learned, not left waiting


def test_a_record_without_a_key_in_a_batch_is_dead_lettered_alone() -> None:
    p = batch_pipeline()
    out = Recorder()
    records = [keyed_event(0, "u1", {"a": 1.0}), keyed_event(1, None, {"a": 1.0})]
    records.append(Rec("features", records[0].partition, 2, b"u1", b"not json"))
    p.features(records, 0.0, out)
    assert [m["id"] for m in out.on(p.settings.topics.predictions)] == ["e0"]
    reasons_seen = [letter["reason"] for letter in out.on(p.settings.topics.dead_letters)]
    assert reasons_seen == [reasons.INVALID_MODEL_KEY, reasons.INVALID_JSON]
