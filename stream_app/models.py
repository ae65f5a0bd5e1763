"""Model factories: zero-argument functions returning a fresh River estimator.

Config names one by dotted path (``model.factory = "stream_app.models:logistic_regression"``);
point it at your own function to serve your own model. This module imports River and the standard
library only, so a pickled model that uses :class:`OneHotStrings` loads without any Kafka code.

>>> model = logistic_regression()
>>> model.learn_one({"x": 1.0, "color": "red"}, True)
>>> round(model.predict_proba_one({"x": 1.0, "color": "red"})[True], 3)
0.501
>>> task_of(model), task_of(linear_regression())
('classification', 'regression')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable
from typing import Any

from river import base, compose, forest, linear_model, naive_bayes, preprocessing, tree

__all__ = [
    "OneHotStrings",
    "adaptive_random_forest",
    "final_step",
    "gaussian_nb",
    "hoeffding_tree",
    "is_binary",
    "linear_regression",
    "logistic_regression",
    "resolve_factory",
    "supports_many",
    "task_of",
]

Factory = Callable[[], Any]


class OneHotStrings(base.Transformer):
    """Turn string features into ``name=value`` indicators; numbers and booleans pass through.

    Linear models and scalers need numbers; this costs ~3 us per event where River's
    ``SelectType`` union costs ~24 us (measured on 15 features).

    >>> OneHotStrings().transform_one({"x": 2.0, "color": "red", "ok": True})
    {'x': 2.0, 'color=red': 1.0, 'ok': True}
    """

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        """Return ``x`` with each string value replaced by a 1.0 indicator (``x`` if none is)."""
        for value in x.values():
            if value.__class__ is str:
                break
        else:
            return x  # all numbers: no copy (the common case, and most of this step's cost)
        return {
            (name if value.__class__ is not str else f"{name}={value}"): (
                value if value.__class__ is not str else 1.0
            )
            for name, value in x.items()
        }

    def transform_many(self, X: Any) -> Any:
        """Return a numeric frame unchanged: batch inference sends only numeric features here."""
        if any(dtype.kind not in "biuf" for dtype in X.dtypes):
            raise TypeError("OneHotStrings.transform_many takes numeric columns only")
        return X

    def learn_many(self, X: Any) -> None:
        """Learn nothing: the encoding has no state (present so pipelines can ``learn_many``)."""


def logistic_regression() -> Any:
    """Binary classifier: strings one-hot, numbers standardised, logistic regression (default)."""
    return OneHotStrings() | preprocessing.StandardScaler() | linear_model.LogisticRegression()


def linear_regression() -> Any:
    """Regressor: strings one-hot, numbers standardised, linear regression with SGD."""
    return OneHotStrings() | preprocessing.StandardScaler() | linear_model.LinearRegression()


def hoeffding_tree() -> Any:
    """Multi-class classifier: a Hoeffding tree, which splits on strings natively."""
    return tree.HoeffdingTreeClassifier()


def gaussian_nb() -> Any:
    """Multi-class classifier: Gaussian naive Bayes on one-hot strings and raw numbers."""
    return OneHotStrings() | naive_bayes.GaussianNB()  # type: ignore[no-untyped-call]


def adaptive_random_forest() -> Any:
    """Multi-class classifier: an adaptive random forest of 10 trees (a large model, ~50 MB)."""
    return forest.ARFClassifier(n_models=10, seed=42)


def resolve_factory(path: str) -> Factory:
    """Import ``module:function`` and return the function.

    >>> resolve_factory("stream_app.models:hoeffding_tree").__name__
    'hoeffding_tree'
    """
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise AttributeError(f"{path}: {module_name} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


def final_step(estimator: Any) -> Any:
    """Return the last step of a (possibly nested) pipeline: the part that predicts."""
    final = estimator
    while isinstance(final, compose.Pipeline):
        final = list(final.steps.values())[-1]
    return final


def supports_many(estimator: Any, task: str, method: str = "") -> bool:
    """Tell whether every step of ``estimator`` has the vectorised (``*_many``) method needed.

    ``method`` is the final step's (default: ``predict_proba_many`` for classifiers,
    ``predict_many`` for regressors); earlier steps need ``transform_many`` too, and
    ``learn_many`` when ``method`` is ``learn_many``.

    >>> supports_many(logistic_regression(), "classification")
    True
    >>> supports_many(hoeffding_tree(), "classification", "learn_many")
    False
    """
    final = method or ("predict_proba_many" if task == "classification" else "predict_many")
    if not isinstance(estimator, compose.Pipeline):
        return hasattr(estimator, final)
    *steps, last = estimator.steps.values()
    needed = ("transform_many", "learn_many") if final == "learn_many" else ("transform_many",)
    return all(hasattr(step, name) for step in steps for name in needed) and supports_many(
        last, task, method
    )


def is_binary(estimator: Any) -> bool:
    """Tell whether a classifier learns only two classes, as booleans (logistic regression).

    >>> is_binary(logistic_regression()), is_binary(hoeffding_tree())
    (True, False)
    """
    final = final_step(estimator)
    return isinstance(final, base.Classifier) and not final._multiclass


def task_of(estimator: Any) -> str:
    """Name the task an estimator performs: ``classification`` or ``regression``."""
    final = final_step(estimator)
    if isinstance(final, base.Classifier):
        return "classification"
    if isinstance(final, base.Regressor):
        return "regression"
    raise TypeError(f"{type(estimator).__name__} is neither a River classifier nor a regressor")
