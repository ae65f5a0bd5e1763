"""Model factories by name: the canonical string a version records, and a build that says why not.

A factory is named by its dotted path and, where it takes keyword arguments
(``model.factory_params``), those too. :func:`factory_spec` spells both as one canonical string,
the ``factory`` of every version record, so that two configurations that build the same model
compare equal and any other difference shows.

>>> spec = factory_spec("stream_app.models:hoeffding_tree", {"b": 2, "a": 1.5})
>>> spec
'stream_app.models:hoeffding_tree {"a":1.5,"b":2}'
>>> parse_spec(spec)
('stream_app.models:hoeffding_tree', {'a': 1.5, 'b': 2})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson

from stream_app.errors import ModelError
from stream_app.models import resolve_factory, task_of
from stream_app.settings import ModelSettings

__all__ = ["Built", "build_estimator", "factory_spec", "parse_spec", "spec_of", "warm_up"]

WARM_UP_FEATURES: Final = {"warm_up": 0.0}
"""The made-up example :func:`warm_up` learns and answers (one numeric feature)."""

_PARAMS_SEPARATOR = " "
"""Between the path and the JSON of the parameters (a dotted path has no spaces)."""


class Built(NamedTuple):
    """A fresh estimator, the task it performs, and the canonical name of what built it."""

    estimator: Any
    task: str
    spec: str


def factory_spec(path: str, params: Mapping[str, Any]) -> str:
    """Spell a factory and its keyword arguments as one canonical string (keys sorted).

    Without parameters the spec is the path alone, as versions recorded it before parameters.

    >>> factory_spec("stream_app.models:logistic_regression", {})
    'stream_app.models:logistic_regression'
    """
    if not params:
        return path
    return path + _PARAMS_SEPARATOR + orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a canonical factory string back into its path and keyword arguments.

    >>> parse_spec("stream_app.models:logistic_regression")
    ('stream_app.models:logistic_regression', {})
    """
    path, _, params = spec.partition(_PARAMS_SEPARATOR)
    return path, (orjson.loads(params) if params else {})


def spec_of(settings: ModelSettings) -> str:
    """Spell the configured factory (``model.factory`` and ``model.factory_params``) canonically.

    >>> spec_of(ModelSettings())
    'stream_app.models:logistic_regression'
    """
    return factory_spec(settings.factory, settings.factory_params)


def build_estimator(path: str, params: Mapping[str, Any]) -> Built:
    """Build a fresh estimator; raise :class:`ModelError` saying which step failed and why.

    >>> build_estimator("stream_app.models:hoeffding_tree", {}).task
    'classification'
    >>> build_estimator("no_such_module:f", {})
    Traceback (most recent call last):
    ...
    stream_app.errors.ModelError: model factory 'no_such_module:f' cannot be imported: No module named 'no_such_module'
    >>> build_estimator("builtins:dict", {})
    Traceback (most recent call last):
    ...
    stream_app.errors.ModelError: model factory 'builtins:dict' returned a dict, not a River classifier or regressor
    """  # noqa: E501
    spec = factory_spec(path, params)
    try:
        factory = resolve_factory(path)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(f"model factory {spec!r} cannot be imported: {exc}") from exc
    try:
        estimator = factory(**params)
    except Exception as exc:  # a user's factory: any error is its own, reported with its spec
        raise ModelError(f"model factory {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    try:
        task = task_of(estimator)
    except TypeError:
        raise ModelError(
            f"model factory {spec!r} returned a {type(estimator).__name__}, "
            "not a River classifier or regressor"
        ) from None
    return Built(estimator, task, spec)


def warm_up(path: str, params: Mapping[str, Any]) -> None:
    """Learn and answer one made-up example on a throwaway model from the factory, at start-up.

    River's pipeline works out each step's role on its first ``learn_one``, and the
    ``isinstance`` checks it makes there scan abstract base classes' subclass registries, once
    per process: ~260 ms with the shipped factory in a worker that has imported River whole.
    Paid here, that pause stays off the first events (at 1,000 events/s it queued ~260 of them,
    which showed in the p99 latency of the first seconds). Raises what the model raises.

    >>> warm_up("stream_app.models:logistic_regression", {})
    >>> warm_up("stream_app.models:linear_regression", {})
    """
    built = build_estimator(path, params)
    estimator, features = built.estimator, dict(WARM_UP_FEATURES)
    if built.task == "classification":
        estimator.learn_one(features, True)
        estimator.predict_proba_one(features)
    else:
        estimator.learn_one(features, 0.0)
        estimator.predict_one(features)
