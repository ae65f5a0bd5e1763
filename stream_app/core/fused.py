"""Learn and answer one event with the shipped linear pipelines, without River's generic loop.

River's ``Pipeline.learn_one`` walks an execution plan built for any pipeline: per step it reads
the step's kind, routes extra keyword arguments (``_route``) and calls by keyword. For the shipped
linear factories (:func:`~stream_app.models.logistic_regression`,
:func:`~stream_app.models.linear_regression`: ``ScaleNumbers | BoundedOneHot | LogisticRegression``
or ``LinearRegression``, exact types, as :func:`~stream_app.core.linear_batch.linear_steps` checks)
that plumbing does nothing but cost about a fifth of a ``learn_one``. The functions here call the
steps' own methods, with the same arguments, in exactly River's order:

- :func:`learn_one`: the two unsupervised transformers learn, then transform, in turn
  (``ScaleNumbers.learn_one``, ``ScaleNumbers.transform_one``, ``BoundedOneHot.learn_one``,
  ``BoundedOneHot.transform_one``), then the final step learns what they made;
- :func:`predict_proba_one`, :func:`predict_one`: the transformers transform, the final step
  answers.

The one-hot step's calls are skipped where they provably do nothing: when every name is one it has
admitted and no value is a string, its ``learn_one`` returns at once and its ``transform_one``
returns its input (the test those methods make first; :func:`_passes`). The pipeline's plan is
built on the first call, as River builds it, so the model's whole state stays River's own.
Anything else (any other estimator, a subclass, River's ``learn_during_predict`` mode, checked at
every call) takes River's own methods, and so does a method set on the pipeline itself (a test's
stand-in, a logging wrapper). The answers and the state are therefore River's to the bit
(tests/property/test_fused_properties.py).

>>> from stream_app.models import logistic_regression
>>> fused, river = logistic_regression(), logistic_regression()
>>> for i in range(20):
...     x = {"a": float(i), "b": i % 3, "c": "red" if i % 2 else "blue"}
...     learn_one(fused, x, i % 2 == 0)
...     river.learn_one(x, i % 2 == 0)
>>> x = {"a": 3.5, "b": 1, "c": "red"}
>>> predict_proba_one(fused, x) == river.predict_proba_one(x) == predict_proba_one(river, x)
True
>>> predict_one(fused, x) == river.predict_one(x)
True
"""

from __future__ import annotations

from typing import Any

from stream_app.core.linear_batch import linear_steps

__all__ = ["learn_one", "predict_one", "predict_proba_one"]


def learn_one(estimator: Any, x: dict[Any, Any], y: Any) -> None:
    """Learn one example as ``estimator.learn_one(x, y)`` does, faster for a shipped pipeline."""
    steps = linear_steps(estimator)
    if steps is None or "learn_one" in estimator.__dict__:
        estimator.learn_one(x, y)
        return
    if estimator._plan is None:
        estimator._build_plan()  # as River's first learn_one does: the pipeline's state is River's
    scale, one_hot, final = steps
    scale.learn_one(x)
    z = scale.transform_one(x)
    if not _passes(one_hot, z):
        one_hot.learn_one(z)
        z = one_hot.transform_one(z)
    final.learn_one(z, y)


def predict_proba_one(estimator: Any, x: dict[Any, Any]) -> Any:
    """Answer ``estimator.predict_proba_one(x)``, faster for a shipped linear classifier."""
    steps = linear_steps(estimator)
    if steps is None or "predict_proba_one" in estimator.__dict__:
        return estimator.predict_proba_one(x)
    return steps[2].predict_proba_one(_transform(estimator, steps, x))


def predict_one(estimator: Any, x: dict[Any, Any]) -> Any:
    """Answer ``estimator.predict_one(x)``, faster for a shipped linear pipeline."""
    steps = linear_steps(estimator)
    if steps is None or "predict_one" in estimator.__dict__:
        return estimator.predict_one(x)
    return steps[2].predict_one(_transform(estimator, steps, x))


def _transform(estimator: Any, steps: tuple[Any, Any, Any], x: dict[Any, Any]) -> Any:
    """Return ``x`` through the scaling and one-hot steps, as River's ``_transform_one`` does."""
    if estimator._plan is None:
        estimator._build_plan()  # as River's first prediction does
    scale, one_hot, _ = steps
    z = scale.transform_one(x)
    return z if _passes(one_hot, z) else one_hot.transform_one(z)


def _passes(one_hot: Any, z: dict[Any, Any]) -> bool:
    """Tell that the one-hot step's ``learn_one(z)`` does nothing and ``transform_one(z)`` is z.

    That holds when every name of ``z`` is one it has admitted and no value is a string (the test
    its methods make first). A sum from 0.0 proves the second in C, faster than looking at each
    value's type: ``0.0 + "red"`` is a TypeError. A sum that fails for any other reason (an integer
    beyond a float's range) only means the step's own methods decide.

    >>> from stream_app.models import BoundedOneHot
    >>> step = BoundedOneHot()
    >>> step.learn_one({"x": 1.0, "n": 2})
    >>> _passes(step, {"x": 0.5, "n": 3}), _passes(step, {"x": 0.5, "y": 1.0})
    (True, False)
    >>> _passes(step, {"x": "red"}), _passes(step, {"n": 10**400})
    (False, False)
    """
    if not one_hot._known.issuperset(z):
        return False
    try:
        sum(z.values(), 0.0)
    except Exception:  # a string (or an integer too large for a float): the step decides
        return False
    return True
