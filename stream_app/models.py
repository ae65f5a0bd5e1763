"""Model factories: zero-argument functions returning a fresh River estimator.

Config names one by dotted path (``model.factory = "stream_app.models:logistic_regression"``);
point it at your own function to serve your own model. This module imports River, the standard
library and :mod:`stream_app.errors` only, so a pickled model that uses :class:`BoundedOneHot`
loads without any Kafka code.

>>> model = logistic_regression()
>>> model.learn_one({"x": 1.0, "color": "red"}, True)
>>> round(model.predict_proba_one({"x": 1.0, "color": "red"})[True], 3)
0.502
>>> task_of(model), task_of(linear_regression())
('classification', 'regression')

Bounded inputs
--------------

A linear model keeps a weight (and scaler state) per input it has ever seen, so a string feature
with a new value per event (a user id, a URL) or ``features`` whose keys churn would grow it
without end. :class:`BoundedOneHot` turns ``name: "value"`` into the indicator ``"name=value"``
(numbers and booleans pass through) and admits the first ``max_indicators`` distinct inputs
(numeric names and indicators alike) exactly; any input first seen after that is hashed into one
of ``max_indicators`` buckets, where values that share a bucket add up. A model behind it tracks
at most ``2 * max_indicators`` inputs, whatever the stream; a stream with fewer distinct inputs
than the bound is served exactly as without it (the oracle tests rely on this).

Buckets are keyed by their number, an ``int``, which no JSON feature name can be. The bucket of an
input is a keyed BLAKE2b digest of its name, the same in every process (Python's ``hash()`` of a
``str`` is salted per process, so it would scatter a restored model's buckets).

>>> step = BoundedOneHot(max_indicators=2)
>>> for x in ({"x": 1.0, "color": "red"}, {"x": 2.0, "color": "blue"}):
...     step.learn_one(x)
>>> step.transform_one({"x": 2.0, "color": "red"})
{'x': 2.0, 'color=red': 1.0}
>>> hashed = step.transform_one({"x": 2.0, "color": "blue"})
>>> hashed["x"], [type(k).__name__ for k in hashed]
(2.0, ['str', 'int'])
>>> step.inputs, input_bound(step)
(3, 4)
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Hashable
from typing import Any, Final

from river import base, compose, forest, linear_model, naive_bayes, tree

from stream_app.errors import ModelError
from stream_app.scaling import ScaleNumbers

__all__ = [
    "DEFAULT_MAX_INDICATORS",
    "BoundedOneHot",
    "OneHotStrings",
    "adaptive_random_forest",
    "bucket_of",
    "final_step",
    "gaussian_nb",
    "hoeffding_tree",
    "input_bound",
    "is_binary",
    "linear_regression",
    "logistic_regression",
    "resolve_factory",
    "set_max_indicators",
    "supports_many",
    "task_of",
    "tracked_inputs",
]

Factory = Callable[[], Any]

DEFAULT_MAX_INDICATORS: Final = 2**16
"""Exact inputs (and hash buckets) of a step built without a bound (``model.max_indicators``)."""
BUCKETS_PER_INDICATOR: Final = 1
"""Hash buckets per exactly kept input: an input beyond the bound goes to one of as many buckets."""
_DIGEST_BYTES: Final = 8
_DIGEST_KEY: Final = b"stream_app.indicators"


def bucket_of(key: Hashable, buckets: int) -> int:
    """Return the bucket of input ``key`` among ``buckets``: the same in every process.

    >>> bucket_of("user=u-1", 1024), bucket_of("user=u-1", 1024) == bucket_of("user=u-2", 1024)
    (116, False)
    """
    digest = hashlib.blake2b(str(key).encode(), digest_size=_DIGEST_BYTES, key=_DIGEST_KEY)
    return int.from_bytes(digest.digest(), "little") % buckets


class BoundedOneHot(base.Transformer):
    """Turn strings into ``name=value`` indicators; hash inputs beyond ``max_indicators``.

    Parameters
    ----------
    max_indicators
        Distinct inputs kept exactly (first seen, first kept); later ones share as many buckets.

    >>> BoundedOneHot().transform_one({"x": 2.0, "color": "red", "ok": True})
    {'x': 2.0, 'color=red': 1.0, 'ok': True}
    """

    def __init__(self, max_indicators: int = DEFAULT_MAX_INDICATORS) -> None:
        if max_indicators < 1:
            raise ModelError(f"max_indicators must be positive, got {max_indicators}")
        self.max_indicators = max_indicators
        self._known: set[Hashable] = set()
        self._used: bytearray | None = None  # one byte per bucket, allocated once one is used
        self._buckets_used = 0

    @property
    def inputs(self) -> int:
        """Distinct inputs the next step sees: exact names plus buckets in use."""
        return len(self._known) + self._buckets_used

    @property
    def buckets(self) -> int:
        """How many buckets inputs beyond the bound share."""
        return self.max_indicators * BUCKETS_PER_INDICATOR

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        """Admit the new inputs of ``x`` while there is room; count the buckets the rest take."""
        known = self._known
        if known.issuperset(x) and str not in map(type, x.values()):
            return  # known numbers only (checked in C): the common case
        for name, value in x.items():
            key = f"{name}={value}" if value.__class__ is str else name
            if key in known:
                continue
            if len(known) < self.max_indicators:
                known.add(key)
            else:
                self._use(bucket_of(key, self.buckets))

    def _use(self, bucket: int) -> None:
        """Mark ``bucket`` as in use (for :attr:`inputs`)."""
        if self._used is None:
            self._used = bytearray(self.buckets)
        if not self._used[bucket]:
            self._used[bucket] = 1
            self._buckets_used += 1

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        """Return ``x`` with strings as 1.0 indicators and inputs beyond the bound hashed."""
        known = self._known
        if known.issuperset(x) and str not in map(type, x.values()):
            return x  # known numbers only (checked in C): no copy, the common case
        full = len(known) >= self.max_indicators
        out: dict[Hashable, Any] = {}
        for name, value in x.items():
            if value.__class__ is str:
                key: Hashable = f"{name}={value}"
                value = 1.0
            else:
                key = name
            if full and key not in known:
                key = bucket_of(key, self.buckets)
                value = out.get(key, 0.0) + value
            out[key] = value
        return out

    def learn_many(self, X: Any) -> None:
        """Admit a numeric frame's columns as :meth:`learn_one` admits names."""
        self.learn_one(dict.fromkeys(X.columns, 0.0))

    def transform_many(self, X: Any) -> Any:
        """Return a numeric frame with columns beyond the bound summed into their buckets."""
        if any(dtype.kind not in "biuf" for dtype in X.dtypes):
            raise TypeError("BoundedOneHot.transform_many takes numeric columns only")
        known = self._known
        if len(known) < self.max_indicators or all(c in known for c in X.columns):
            return X
        mapping = {c: c if c in known else bucket_of(c, self.buckets) for c in X.columns}
        return X.rename(columns=mapping).T.groupby(level=0, sort=False).sum().T


class OneHotStrings(base.Transformer):
    """Turn string features into ``name=value`` indicators; numbers and booleans pass through.

    Unbounded: kept so that versions stored before :class:`BoundedOneHot` still load.

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
    """Binary classifier: numbers standardised, strings one-hot, logistic regression (default).

    Versions stored before :class:`~stream_app.scaling.ScaleNumbers` keep their own pipeline
    (one-hot, then River's ``StandardScaler``, which zeroes every indicator) and load as stored.
    """
    return ScaleNumbers() | BoundedOneHot() | linear_model.LogisticRegression()


def linear_regression() -> Any:
    """Regressor: numbers standardised, strings one-hot, linear regression with SGD."""
    return ScaleNumbers() | BoundedOneHot() | linear_model.LinearRegression()


def hoeffding_tree() -> Any:
    """Multi-class classifier: a Hoeffding tree, which splits on strings natively."""
    return tree.HoeffdingTreeClassifier()


def gaussian_nb() -> Any:
    """Multi-class classifier: Gaussian naive Bayes on one-hot strings and raw numbers."""
    return BoundedOneHot() | naive_bayes.GaussianNB()  # type: ignore[no-untyped-call]


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


def _steps(estimator: Any) -> list[BoundedOneHot]:
    """Every :class:`BoundedOneHot` in ``estimator`` (a pipeline, possibly nested)."""
    if isinstance(estimator, BoundedOneHot):
        return [estimator]
    if isinstance(estimator, compose.Pipeline):
        return [s for step in estimator.steps.values() for s in _steps(step)]
    return []


def tracked_inputs(estimator: Any) -> int | None:
    """Distinct inputs past the bounded steps of ``estimator``; None if it has none.

    >>> from river import linear_model
    >>> model = BoundedOneHot() | linear_model.LogisticRegression()
    >>> model.learn_one({"x": 1.0, "color": "red"}, True)
    >>> tracked_inputs(model), tracked_inputs(linear_model.LogisticRegression())
    (2, None)
    """
    steps = _steps(estimator)
    return sum(s.inputs for s in steps) if steps else None


def input_bound(estimator: Any) -> int | None:
    """Most inputs the bounded steps of ``estimator`` can pass on; None if it has none."""
    steps = _steps(estimator)
    return sum(s.max_indicators + s.buckets for s in steps) if steps else None


def set_max_indicators(estimator: Any, max_indicators: int) -> Any:
    """Give every bounded step of an untrained ``estimator`` this bound; return ``estimator``.

    A trained step keeps its own: its buckets depend on it.
    """
    for step in _steps(estimator):
        if step.inputs:
            raise ModelError("the bound of a trained BoundedOneHot cannot change")
        step.max_indicators = max_indicators
    for scale in _scalers(estimator):
        scale.max_names = max_indicators
    return estimator


def _scalers(estimator: Any) -> list[ScaleNumbers]:
    """Every :class:`ScaleNumbers` in ``estimator`` (a pipeline, possibly nested)."""
    if isinstance(estimator, ScaleNumbers):
        return [estimator]
    if isinstance(estimator, compose.Pipeline):
        return [s for step in estimator.steps.values() for s in _scalers(step)]
    return []
