"""Batch answers of the shipped linear pipelines with NumPy: River's answers, to the bit."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stream_app.core.linear_batch import linear_many
from stream_app.core.predict import (
    LINEAR_MIN_ROWS,
    ServingModel,
    fresh_model,
    predict_many,
    predict_one,
)
from stream_app.models import hoeffding_tree, linear_regression, logistic_regression
from stream_app.settings import ModelSettings


def rows(n: int, seed: int, scale: float = 1.0, constant: float = 2.5) -> list[dict[str, Any]]:
    """Floats, an integer, a boolean and a constant feature (its variance stays 0 in training)."""
    rng = random.Random(seed)
    return [
        {
            **{f"f{i}": rng.gauss(0.0, scale) for i in range(12)},
            "count": rng.randrange(-50, 50),
            "flag": rng.random() < 0.3,
            "constant": constant,
        }
        for _ in range(n)
    ]


def trained(factory: str, n: int = 1500) -> ServingModel:
    model = fresh_model(ModelSettings(factory=f"stream_app.models:{factory}"))
    for x in rows(n, seed=1):
        y: Any = x["f0"] - x["f1"] > 0 if model.task == "classification" else 2.0 * x["f0"]
        model.estimator.learn_one(x, model.labels.to_model(y))
        model.examples_learned += 1
    return model


def test_logistic_answers_are_river_s_to_the_bit() -> None:
    model = trained("logistic_regression").estimator
    model.steps["LogisticRegression"]._weights["constant"] = 0.3  # (learning leaves it at 0)
    batch = rows(400, seed=2, scale=3.0, constant=7.0)  # a variance of 0 scales 7.0 to 0.0
    assert linear_many(model, batch) == [model.predict_proba_one(x)[True] for x in batch]


def test_linear_regression_answers_are_river_s_to_the_bit() -> None:
    model = trained("linear_regression").estimator
    batch = rows(400, seed=3, constant=-1.0)
    assert linear_many(model, batch) == [model.predict_one(x) for x in batch]


@pytest.mark.parametrize("factory", ["logistic_regression", "linear_regression"])
@pytest.mark.parametrize("size", [LINEAR_MIN_ROWS - 1, LINEAR_MIN_ROWS, 600])
def test_predict_many_gives_predict_one_s_predictions_exactly(factory: str, size: int) -> None:
    model = trained(factory)
    batch = rows(size, seed=4, scale=2.0)
    assert predict_many(model, batch, min_rows=10_000) == [predict_one(model, x) for x in batch]


def test_beyond_the_sigmoid_s_clamp_the_probabilities_are_still_floats() -> None:
    model = trained("logistic_regression")
    batch = rows(20, seed=5, scale=1e4)  # far from the mean: River's sigmoid answers 0 or 1
    many = predict_many(model, batch, min_rows=10_000)
    assert many == [predict_one(model, x) for x in batch]
    assert {p for answer in many for p in answer.proba.values()} <= {0.0, 1.0}
    assert all(type(p) is float for answer in many for p in answer.proba.values())


def test_an_even_chance_answers_the_first_class_as_river_does() -> None:
    model = fresh_model(ModelSettings(classes=("ham", "spam")))
    for label in ("ham", "spam"):
        model.estimator.learn_one({"a": 1.0}, model.labels.to_model(label))  # variance 0: no weight
        model.examples_learned += 1
    model.estimator.steps["LogisticRegression"].intercept = 0.0  # P(spam) = 0.5 for any event
    batch = [{"a": float(i)} for i in range(LINEAR_MIN_ROWS)]
    many = predict_many(model, batch, min_rows=10_000)
    assert many == [predict_one(model, x) for x in batch]
    assert {answer.prediction for answer in many} == {"ham"}


def test_a_one_class_model_names_only_the_class_it_knows() -> None:
    model = fresh_model(ModelSettings())
    for x in rows(50, seed=6):
        model.estimator.learn_one(x, model.labels.to_model("spam"))
        model.examples_learned += 1
    batch = rows(10, seed=7)
    many = predict_many(model, batch, min_rows=10_000)
    assert many == [predict_one(model, x) for x in batch]
    assert {key for answer in many for key in answer.proba} == {"spam"}


def test_whatever_river_must_decide_is_left_to_it() -> None:
    model = trained("logistic_regression").estimator
    batch = rows(10, seed=8)
    reordered = [*batch[:-1], dict(reversed(batch[-1].items()))]  # the sum's order would differ
    renamed = [*batch[:-1], {**batch[-1], "new": 1.0}]
    texts = [*batch[:-1], {**batch[-1], "f0": "red"}]
    huge = [*batch[:-1], {**batch[-1], "count": 10**30}]
    for other in (reordered, renamed, texts, huge, [], [{}] * LINEAR_MIN_ROWS):
        assert linear_many(model, other) is None
    assert linear_many(trained("hoeffding_tree").estimator, batch) is None
    assert linear_many(logistic_regression(), batch) is None  # no name scaled yet
    assert linear_many(hoeffding_tree(), batch) is None
    unlearned = linear_regression()
    unlearned.learn_one({"other": 1.0}, 1.0)
    assert linear_many(unlearned, batch) is None


def test_a_batch_with_a_string_still_gets_predict_one_s_answers() -> None:
    model = trained("logistic_regression")
    batch: list[dict[str, Any]] = [*rows(9, seed=9), {**rows(1, seed=10)[0], "f3": "blue"}]
    assert predict_many(model, batch, min_rows=1) == [predict_one(model, x) for x in batch]
