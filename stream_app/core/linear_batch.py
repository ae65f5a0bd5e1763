"""Answer a micro-batch of the shipped linear pipelines with NumPy: no data frame, no River call.

Batch mode asks the model once per micro-batch. For the shipped linear factories
(:func:`~stream_app.models.logistic_regression`, :func:`~stream_app.models.linear_regression`:
``ScaleNumbers | BoundedOneHot | LogisticRegression`` or ``LinearRegression``), the answer is a
standardisation, a dot product and (for classifiers) a sigmoid. Building a pandas frame for River's
``predict_proba_many`` cost more than that arithmetic, so a batch below
``inference.many_min_rows`` went event by event; here the batch's numbers go into one matrix and
the model's state is read as it stands:

- each value is standardised as :meth:`~stream_app.scaling.ScaleNumbers.transform_one` does it,
  ``(value - mean) / std`` (or 0.0 while the variance is 0), the same floating-point operations;
- :class:`~stream_app.models.BoundedOneHot` passes known numeric names unchanged;
- the weights are read with River's own ``to_numpy`` (0.0 for a name without a weight), as
  River's ``_raw_dot_many`` reads them; the products are added in the names' order, one at a time
  and from 0.0, as River's ``VectorDict.dot`` adds them, then the intercept;
- the loss's own ``mean_func`` (the sigmoid, for a classifier) turns each sum into the answer.

Each step is the same floating-point operation, in the same order, as ``predict_proba_one``'s
(``predict_one``'s): the answers are the same to the bit. Anything else (another estimator, a
string, a name the scaler or the one-hot step has not admitted, rows whose names differ or come in
another order, River's learn-during-predict mode) returns None and the caller takes the generic
path.

>>> from stream_app.models import logistic_regression
>>> model = logistic_regression()
>>> for i in range(20):
...     model.learn_one({"a": float(i), "b": float(i % 3)}, i % 2 == 0)
>>> rows = [{"a": 1.0, "b": 2.0}, {"a": 5.0, "b": 0.0}]
>>> fast = linear_many(model, rows)
>>> fast == [model.predict_proba_one(x)[True] for x in rows]
True
>>> linear_many(model, [{"a": 1.0, "c": 2.0}]) is None  # a name the model does not know
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from river import compose, linear_model

from stream_app.models import BoundedOneHot
from stream_app.scaling import ScaleNumbers

__all__ = ["linear_many", "linear_steps"]

_FINALS = (linear_model.LogisticRegression, linear_model.LinearRegression)
"""Final steps answered here: their answer is ``loss.mean_func(w . x + intercept)``."""
_STEPS = len(("scale", "one-hot", "final"))
"""Steps of a shipped linear pipeline."""
_NUMERIC_KINDS = "biuf"
"""NumPy kinds of a matrix of numbers (booleans, integers, floats): no string among them."""


def linear_many(estimator: Any, rows: Sequence[dict[str, Any]]) -> list[float] | None:
    """Return the model's answer for each row (P(True) of a classifier), or None if it can't.

    None means: ask River (the estimator is not a shipped linear pipeline, or the rows are not
    numbers under the same names, all known to the model).
    """
    steps = linear_steps(estimator)
    if steps is None or not rows:
        return None
    scale, one_hot, final = steps
    first = rows[0]
    columns = tuple(first)
    if not columns or not all(map(columns.__eq__, map(tuple, rows))):
        return None  # no names; other names; the same in another order (the sum's would differ)
    if not (first.keys() <= scale._slots.keys() and one_hot._known.issuperset(columns)):
        return None  # a name not scaled yet, or not admitted by the one-hot step: River decides
    matrix = np.array(list(map(tuple, map(dict.values, rows))))
    if matrix.dtype.kind not in _NUMERIC_KINDS:
        return None  # a string among the values (or an integer beyond 64 bits)
    means, stds, constant = scale.statistics(columns)
    scaled = (matrix.reshape(len(rows), len(columns)) - means) / stds
    if constant.any():
        scaled[:, constant] = 0.0  # ScaleNumbers gives 0.0 while a name's variance is 0
    products = scaled * final._weights.to_numpy(columns)
    # River's dot adds the products in the names' order, one at a time, from 0.0: a running sum
    # (accumulate is sequential) is that; adding 0.0 turns the sign of a sum of zeros as 0.0 does.
    raw = np.add.accumulate(products, axis=1)[:, -1] + 0.0
    raw += final.intercept
    return list(map(final.loss.mean_func, raw.tolist()))


def linear_steps(estimator: Any) -> tuple[ScaleNumbers, BoundedOneHot, Any] | None:
    """Return the three steps of a shipped linear pipeline, or None for any other estimator.

    Exact types only: a subclass may transform or predict otherwise. None too in River's
    ``learn_during_predict`` mode (a class setting, read at every call), where the pipeline's
    transformers learn as they answer. Called once per event by :mod:`.fused`: it unpacks the
    steps without building a list.

    >>> from stream_app.models import hoeffding_tree, logistic_regression
    >>> [type(step).__name__ for step in linear_steps(logistic_regression())]
    ['ScaleNumbers', 'BoundedOneHot', 'LogisticRegression']
    >>> linear_steps(hoeffding_tree()) is None
    True
    """
    if type(estimator) is not compose.Pipeline or estimator._LEARN_UNSUPERVISED_DURING_PREDICT:
        return None
    steps = estimator.steps
    if len(steps) != _STEPS:
        return None
    scale, one_hot, final = steps.values()
    if type(scale) is not ScaleNumbers or type(one_hot) is not BoundedOneHot:
        return None
    if type(final) not in _FINALS:
        return None
    return scale, one_hot, final
