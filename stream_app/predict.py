"""The predict step: ask the serving model about one event's features.

A model that has learned nothing yet answers ``None`` with empty probabilities rather than a
made-up 50/50, so consumers can tell "no opinion" from "unsure".

>>> from stream_app.settings import ModelSettings
>>> model = fresh_model(ModelSettings())
>>> predict_one(model, {"x": 1.0})
Prediction(prediction=None, proba={})
>>> model.estimator.learn_one({"x": 1.0}, model.labels.to_model(True)); model.examples_learned += 1
>>> answer = predict_one(model, {"x": 1.0})
>>> answer.prediction, sorted(answer.proba)
(True, ['false', 'true'])
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from stream_app.errors import ModelError
from stream_app.label import LabelCodec
from stream_app.models import is_binary, resolve_factory, task_of
from stream_app.settings import ModelSettings

__all__ = ["Prediction", "ServingModel", "class_key", "fresh_model", "predict_one"]


@dataclasses.dataclass
class ServingModel:
    """The estimator that answers, with the identity every prediction carries."""

    name: str
    version: int
    estimator: Any
    task: str
    labels: LabelCodec
    examples_learned: int = 0


class Prediction(NamedTuple):
    """What the model said: the answer and, for classifiers, a probability per class."""

    prediction: Any
    proba: dict[str, float]


def fresh_model(settings: ModelSettings, version: int = 0) -> ServingModel:
    """Build an untrained model from the configured factory and check it fits the task."""
    try:
        estimator = resolve_factory(settings.factory)()
        task = task_of(estimator)
    except Exception as exc:
        raise ModelError(f"model factory {settings.factory!r} failed: {exc}") from exc
    if settings.task not in ("auto", task):
        raise ModelError(
            f"model.task is {settings.task!r} but {settings.factory} builds a {task} model"
        )
    codec = LabelCodec(task, binary=is_binary(estimator), declared=settings.classes)
    return ServingModel(settings.name, version, estimator, task, codec)


def predict_one(model: ServingModel, features: dict[str, Any]) -> Prediction:
    """Predict one event; classifiers also return class probabilities keyed by :func:`class_key`."""
    if model.examples_learned == 0:
        return Prediction(None, {})
    if model.task == "regression":
        return Prediction(float(model.estimator.predict_one(features)), {})
    proba = model.estimator.predict_proba_one(features)
    if not proba:
        return Prediction(None, {})
    # River's predict_one is the argmax of predict_proba_one; take it from the same call.
    best = max(proba, key=proba.__getitem__)
    decode = model.labels.from_model
    return Prediction(
        decode(best),
        {class_key(decode(c)): float(p) for c, p in proba.items() if decode(c) is not None},
    )


def class_key(label: Any) -> str:
    """Spell a class as a JSON object key: booleans as JSON spells them, anything else as str().

    >>> class_key(True), class_key(1), class_key("cat")
    ('true', '1', 'cat')
    """
    if label is True:
        return "true"
    if label is False:
        return "false"
    return str(label)
