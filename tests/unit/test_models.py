"""A contract over every model factory the config can name (after River's own estimator checks)."""

from __future__ import annotations

import copy
import pickle
import random

import pytest

from stream_app import models
from stream_app.core.predict import ServingModel, fresh_model, predict_one
from stream_app.settings import ModelSettings

FACTORIES = [
    "logistic_regression",
    "linear_regression",
    "hoeffding_tree",
    "gaussian_nb",
    "adaptive_random_forest",
]


def examples(task: str, n: int, seed: int = 7) -> list[tuple[dict[str, object], object]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.uniform(-2, 2), "color": rng.choice(["red", "blue"])}
        signal = x["a"] + (0.5 if x["color"] == "red" else -0.5)  # type: ignore[operator]
        y = signal > 0 if task == "classification" else 3.0 * signal + rng.gauss(0, 0.1)
        out.append((x, y))
    return out


@pytest.fixture(params=FACTORIES)
def factory(request: pytest.FixtureRequest) -> str:
    return f"stream_app.models:{request.param}"


def trained(factory: str, n: int = 300) -> ServingModel:
    model = fresh_model(ModelSettings(factory=factory))
    for x, y in examples(model.task, n):
        model.estimator.learn_one(x, model.labels.to_model(y))
        model.examples_learned += 1
    return model


def test_factory_builds_a_fresh_estimator_each_call(factory: str) -> None:
    build = models.resolve_factory(factory)
    assert build() is not build()


def test_predicts_after_learning_and_handles_new_and_missing_features(factory: str) -> None:
    model = trained(factory)
    for x in ({"a": 1.0, "b": 0.0, "color": "red"}, {"a": 1.0}, {"a": 1.0, "new": 5, "ok": True}):
        result = predict_one(model, x)
        assert result.prediction is not None
        if model.task == "classification":
            assert result.proba and abs(sum(result.proba.values()) - 1.0) < 1e-6
            assert all(isinstance(k, str) for k in result.proba)


def test_learning_from_a_signal_beats_chance(factory: str) -> None:
    model = trained(factory, n=1000)
    test = examples(model.task, 200, seed=99)
    if model.task == "classification":
        hits = sum(predict_one(model, x).prediction == y for x, y in test)
        assert hits / len(test) > 0.7
    else:
        errors = [abs(predict_one(model, x).prediction - y) for x, y in test]  # type: ignore[operator]
        assert sum(errors) / len(errors) < 1.5


def test_pickle_and_clone_round_trip_keep_predictions(factory: str) -> None:
    model = trained(factory)
    restored: ServingModel = pickle.loads(pickle.dumps(model))  # the codec travels with it
    cloned = copy.deepcopy(model)
    for x, _ in examples(model.task, 50, seed=3):
        assert predict_one(restored, x) == predict_one(model, x) == predict_one(cloned, x)
    assert predict_one(fresh_model(ModelSettings(factory=factory)), {"a": 1.0}).prediction is None


def test_task_mismatch_and_bad_paths_are_model_errors() -> None:
    from stream_app.errors import ModelError

    with pytest.raises(ModelError, match="regression model"):
        fresh_model(
            ModelSettings(factory="stream_app.models:linear_regression", task="classification")
        )
    with pytest.raises(ModelError, match="no callable"):
        fresh_model(ModelSettings(factory="stream_app.models:nothing_here"))
    with pytest.raises(ModelError, match="No module"):
        fresh_model(ModelSettings(factory="no_such_module:f"))
