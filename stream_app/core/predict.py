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

A batch gets one answer per event, from one vectorised call when it is large and uniform:

>>> [p.prediction for p in predict_many(model, [{"x": 1.0}, {"x": 2.0}], min_rows=2)]
[True, True]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any, Final, NamedTuple

from stream_app.core import fused
from stream_app.core.factory import build_estimator
from stream_app.core.label import LabelCodec, class_key
from stream_app.core.linear_batch import linear_many
from stream_app.errors import ModelError
from stream_app.models import (
    DEFAULT_MAX_INDICATORS,
    is_binary,
    set_max_indicators,
    supports_many,
)
from stream_app.settings import ModelSettings

__all__ = [
    "NO_ANSWER",
    "Prediction",
    "ServingModel",
    "class_key",
    "fresh_model",
    "numeric_matrix",
    "predict_many",
    "predict_one",
]


@dataclasses.dataclass
class ServingModel:
    """The estimator that answers, with the identity every prediction carries."""

    name: str
    version: int
    estimator: Any
    task: str
    labels: LabelCodec
    examples_learned: int = 0
    feature_names: set[str] = dataclasses.field(default_factory=set)
    """Names of the features of the examples it learned (for exported artifacts)."""
    factory: str = ""
    """The canonical name of the factory that built it
    (:func:`~stream_app.core.factory.factory_spec`); empty when unknown (a version stored before
    models recorded it)."""
    max_names: int = DEFAULT_MAX_INDICATORS
    """Most names :attr:`feature_names` keeps (``model.max_indicators``): churning names stop."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also versions stored before ``feature_names``, ``factory`` or ``max_names``."""
        state.setdefault("feature_names", set())
        state.setdefault("factory", "")
        state.setdefault("max_names", DEFAULT_MAX_INDICATORS)
        self.__dict__.update(state)

    def note_names(self, names: Collection[str]) -> None:
        """Remember the feature names of a learned example, up to :attr:`max_names` of them.

        >>> model = dataclasses.replace(fresh_model(ModelSettings()), max_names=2)
        >>> model.note_names(["a", "b"]); model.note_names(["c"]); sorted(model.feature_names)
        ['a', 'b']
        """
        known = self.feature_names
        if len(known) + len(names) <= self.max_names:
            known.update(names)
            return
        for name in names:
            if len(known) >= self.max_names:
                return
            known.add(name)


class Prediction(NamedTuple):
    """What the model said: the answer and, for classifiers, a probability per class."""

    prediction: Any
    proba: dict[str, float]


_new_answer = tuple.__new__
"""Builds a :class:`Prediction` in one C call, once per event: a ``NamedTuple``'s own constructor
is a Python function, about 0.15 us more."""

NO_ANSWER = Prediction(None, {})
"""What a model that has learned nothing says."""

LINEAR_MIN_ROWS: Final = 5
"""Smallest batch the shipped linear pipelines answer with NumPy (:mod:`.linear_batch`) rather
than event by event: its fixed cost (~16 us) is about four calls of :func:`predict_one` (~5 us
each, 15 features); at 1,000 rows a row costs ~1.4 us."""


def fresh_model(settings: ModelSettings, version: int = 0) -> ServingModel:
    """Build an untrained model from the configured factory and check it fits the task."""
    estimator, task, spec = build_estimator(settings.factory, settings.factory_params)
    estimator = set_max_indicators(estimator, settings.max_indicators)
    if settings.task not in ("auto", task):
        raise ModelError(f"model.task is {settings.task!r} but {spec} builds a {task} model")
    codec = LabelCodec(task, binary=is_binary(estimator), declared=settings.classes)
    return ServingModel(
        settings.name,
        version,
        estimator,
        task,
        codec,
        factory=spec,
        max_names=settings.max_indicators,
    )


def predict_one(model: ServingModel, features: dict[str, Any]) -> Prediction:
    """Predict one event; classifiers also return class probabilities keyed by :func:`class_key`."""
    if model.examples_learned == 0:
        return NO_ANSWER
    if model.task == "regression":
        return Prediction(float(fused.predict_one(model.estimator, features)), {})
    proba = fused.predict_proba_one(model.estimator, features)
    if not proba:
        return NO_ANSWER
    # River's predict_one is the argmax of predict_proba_one: take it from the same call, in the
    # same pass that names the classes (the first of equals wins, as in River's ``max``).
    name = model.labels.name
    answer = {}
    best = top = None
    for c, p in proba.items():
        user, key = name(c)
        if top is None or p > top:
            best, top = user, p
        if key is not None:
            answer[key] = p if p.__class__ is float else float(p)
    return _new_answer(Prediction, (best, answer))


def predict_many(
    model: ServingModel, rows: Sequence[dict[str, Any]], min_rows: int
) -> list[Prediction]:
    """Predict a batch with one vectorised call, or event by event where that is not faster.

    The shipped linear pipelines answer a batch of at least :data:`LINEAR_MIN_ROWS` events with
    the same numeric features with NumPy (:mod:`.linear_batch`). For other estimators, the
    vectorised call pays for building a data frame, so it serves batches of at least ``min_rows``
    events with the same numeric features, on estimators that support it; any other batch is
    answered by :func:`predict_one`, event by event. All give the same answers (to rounding).
    """
    if model.examples_learned == 0:
        return [NO_ANSWER] * len(rows)
    if len(rows) >= LINEAR_MIN_ROWS:
        linear = linear_many(model.estimator, rows)
        if linear is not None:
            return _linear_predictions(model, linear)
    matrix = numeric_matrix(rows) if len(rows) >= min_rows else None
    if matrix is None or not supports_many(model.estimator, model.task):
        return [predict_one(model, x) for x in rows]
    import pandas as pd  # only batch inference needs a data frame library

    frame = pd.DataFrame(matrix[1], columns=matrix[0], copy=False)
    if model.task == "regression":
        return [Prediction(float(y), {}) for y in model.estimator.predict_many(frame).tolist()]
    probas = model.estimator.predict_proba_many(frame)
    decode = model.labels.from_model
    labels = [decode(c) for c in probas.columns]
    keep = [(j, class_key(label)) for j, label in enumerate(labels) if label is not None]
    values = probas.to_numpy().tolist()
    answers = []
    for row in values:
        best = max(range(len(row)), key=row.__getitem__)  # the first of equals, as predict_one
        answers.append(Prediction(labels[best], {key: float(row[j]) for j, key in keep}))
    return answers


def _linear_predictions(model: ServingModel, answers: list[float]) -> list[Prediction]:
    """Name the answers of :func:`~stream_app.core.linear_batch.linear_many` as predict_one does.

    A classifier's answer is P(True): its classes are ``{False: 1 - p, True: p}``, the first of
    equals wins (False), and a class not known yet has no key, as in :func:`predict_one`. River's
    sigmoid answers the integers 0 and 1 beyond its clamp: they are given as floats.
    """
    if model.task == "regression":
        return [Prediction(float(y), {}) for y in answers]
    (negative, no), (positive, yes) = model.labels.name(False), model.labels.name(True)
    if no is not None and yes is not None:
        return [
            _new_answer(
                Prediction, (positive if p > 1.0 - p else negative, {no: 1.0 - p, yes: float(p)})
            )
            for p in answers
        ]
    out: list[Prediction] = []
    for p in answers:
        proba = {key: value for key, value in ((no, 1.0 - p), (yes, float(p))) if key is not None}
        out.append(Prediction(positive if p > 1.0 - p else negative, proba))
    return out


def numeric_matrix(rows: Sequence[dict[str, Any]]) -> tuple[list[str], Any] | None:
    """Return (columns, float matrix) when every row has the same numeric features, else None.

    >>> numeric_matrix([{"a": 1, "b": 2.5}, {"b": 0.0, "a": 3}])
    (['a', 'b'], array([[1. , 2.5],
           [3. , 0. ]]))
    >>> numeric_matrix([{"a": 1}, {"b": 2}]) is None, numeric_matrix([{"a": "red"}]) is None
    (True, True)
    """
    import numpy as np

    columns = list(rows[0]) if rows else []
    width = len(columns)
    try:
        table = [[x[c] for c in columns] for x in rows if len(x) == width]
    except KeyError:
        return None
    if len(table) != len(rows):
        return None
    for row in table:
        for value in row:
            if value.__class__ is not float and value.__class__ is not int:
                return None  # strings need one-hot encoding, booleans stay booleans: per event
    return columns, np.array(table, dtype=np.float64)
