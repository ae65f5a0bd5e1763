"""The fused path of the shipped linear pipelines: River's state and answers, to the bit."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from river import compose, linear_model

from stream_app.core import fused
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.models import (
    BoundedOneHot,
    linear_regression,
    logistic_regression,
    set_max_indicators,
)
from stream_app.scaling import ScaleNumbers
from stream_app.settings import Settings


def stream(n: int, seed: int) -> list[tuple[dict[str, Any], bool]]:
    """Numbers, integers, booleans, strings; names that come and go, in shuffled order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x: dict[str, Any] = {f"f{i}": rng.gauss(0.0, 2.0) for i in rng.sample(range(12), 6)}
        x["count"] = rng.randrange(-5, 5)
        x["flag"] = rng.random() < 0.5
        if rng.random() < 0.5:
            x["color"] = rng.choice(["red", "blue", "green", "grey"])
        if rng.random() < 0.05:
            x[f"new{rng.randrange(1000)}"] = rng.choice([1.0, "x"])
        names = list(x)
        rng.shuffle(names)
        out.append(({name: x[name] for name in names}, rng.random() < 0.5))
    return out


@pytest.mark.parametrize("factory", [logistic_regression, linear_regression])
@pytest.mark.parametrize("bound", [None, 4, 12])
def test_learning_and_answering_are_rivers(factory: Any, bound: int | None) -> None:
    ours, river = factory(), factory()
    if bound is not None:  # the scaler's names and the one-hot step's inputs both fill up
        set_max_indicators(ours, bound)
        set_max_indicators(river, bound)
    for x, label in stream(600, seed=3):
        y: Any = label if factory is logistic_regression else float(label)
        assert fused.predict_one(ours, x) == river.predict_one(x)
        if factory is logistic_regression:
            assert fused.predict_proba_one(ours, x) == river.predict_proba_one(x)
        fused.learn_one(ours, x, y)
        river.learn_one(x, y)
    assert pickle.dumps(ours) == pickle.dumps(river)
    if bound is not None:
        scale, one_hot, _ = ours.steps.values()
        assert scale.names == bound
        assert one_hot.inputs > bound  # buckets in use


class Counting(compose.Pipeline):
    """A pipeline subclass: it may learn otherwise, so River's own methods serve it."""

    calls = 0

    def learn_one(self, x: dict[str, Any], y: Any = None, **params: Any) -> None:
        Counting.calls += 1
        super().learn_one(x, y, **params)


class Scaled(ScaleNumbers):
    """A scaling step of another type: River's own methods serve the pipeline."""


def test_other_types_go_to_river(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Counting(ScaleNumbers(), BoundedOneHot(), linear_model.LogisticRegression())
    fused.learn_one(pipeline, {"a": 1.0}, True)
    assert Counting.calls == 1
    other = Scaled() | BoundedOneHot() | linear_model.LogisticRegression()
    monkeypatch.setattr(type(other), "learn_one", lambda *args: pytest.fail("fused"))
    with pytest.raises(pytest.fail.Exception):
        fused.learn_one(other, {"a": 1.0}, True)


def test_a_method_set_on_the_pipeline_itself_is_called() -> None:
    model = logistic_regression()
    calls: list[str] = []
    model.learn_one = lambda x, y: calls.append("learn_one")
    model.predict_one = lambda x: calls.append("predict_one")
    model.predict_proba_one = lambda x: calls.append("predict_proba_one")
    fused.learn_one(model, {"a": 1.0}, True)
    fused.predict_one(model, {"a": 1.0})
    fused.predict_proba_one(model, {"a": 1.0})
    assert calls == ["learn_one", "predict_one", "predict_proba_one"]


@pytest.mark.parametrize("mode", ["event", "batch"])
def test_the_worker_learns_answers_and_replays_through_it(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The shipped defaults (guard and witness on) never take River's generic pipeline loop.

    In batch mode with ``learn_many``, examples wait for the batch's end: strings among the
    features keep them from a frame, so they are learned one by one there, witness copies too.
    """
    settings = Settings().replace(
        drift={"policy": "none"},
        guard={"witness_span": 20},
        inference={"mode": mode, "learn_many": True},
    )
    learner, river = Learner(settings), logistic_regression()
    witness = learner.serving.witness
    assert witness is not None
    for name in ("learn_one", "predict_one", "predict_proba_one"):
        refuse = lambda *args, _name=name, **kwargs: pytest.fail(_name)  # noqa: E731
        monkeypatch.setattr(compose.Pipeline, name, refuse)
    data = stream(90, seed=5)
    for i, (x, label) in enumerate(data):
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"e{i}", x, label, served, shadow, float(i)))
        if i % 7 == 6:
            learner.flush()
    learner.flush()
    rebuilt, replayed = witness.rebuild()
    monkeypatch.undo()
    for x, label in data:
        river.learn_one(x, label)
    assert witness.learned_at_copy > 0 and len(replayed) == len(data) - witness.learned_at_copy
    assert state(rebuilt) == state(river)  # the witness learned every label, as River does


def state(model: Any) -> tuple[Any, ...]:
    """A shipped linear pipeline's state, its sets as sets: a set copied (as the witness copies
    the model) may list the same names in another order, so pickles cannot be compared."""
    scale, one_hot, final = model.steps.values()
    return (
        scale._slots,
        one_hot._known,
        one_hot._buckets_used,
        final.weights,
        final.intercept,
        final.optimizer.n_iterations,
    )
