"""The model-size watch: how many inputs the serving model tracks, and one warning near the bound.

The shipped factories bound a model's inputs (``model.max_indicators``, see
:class:`stream_app.models.BoundedOneHot`); past :data:`WARN_SHARE` of that bound, new string values
and feature names share hash buckets and accuracy may suffer, so the worker says so, once. For an
estimator without a bounded step, the count is the distinct feature names it learned.

>>> import logging
>>> from stream_app.core.predict import fresh_model
>>> from stream_app.settings import ModelSettings
>>> model = fresh_model(ModelSettings(max_indicators=2))
>>> model.estimator.learn_one({"x": 1.0, "color": "red"}, True)
>>> watch = SizeWatch()
>>> watch.observe(model), watch.warned
(2, False)
>>> model.estimator.learn_one({"x": 1.0, "color": "blue", "y": 2.0}, True)
>>> watch.observe(model), watch.warned
(4, True)
"""

from __future__ import annotations

import logging
from typing import Final

from stream_app.core.predict import ServingModel
from stream_app.models import input_bound, tracked_inputs

__all__ = ["WARN_SHARE", "SizeWatch", "model_inputs"]

log = logging.getLogger(__name__)

WARN_SHARE: Final = 0.75
"""Share of a model's input bound past which the worker warns (once) that the bound bites."""


def model_inputs(model: ServingModel) -> tuple[int, int]:
    """Return (inputs the model tracks, the most it can track).

    >>> from stream_app.core.predict import fresh_model
    >>> from stream_app.settings import ModelSettings
    >>> model_inputs(fresh_model(ModelSettings(max_indicators=8)))
    (0, 16)
    """
    tracked = tracked_inputs(model.estimator)
    if tracked is None:
        return len(model.feature_names), model.max_names
    bound = input_bound(model.estimator)
    return tracked, tracked if bound is None else bound


class SizeWatch:
    """Counts the serving model's inputs; warns once when they pass a share of the bound."""

    def __init__(self) -> None:
        self.warned = False

    def observe(self, model: ServingModel) -> int:
        """Return how many inputs ``model`` tracks; warn the first time it nears its bound."""
        tracked, bound = model_inputs(model)
        if not self.warned and tracked > WARN_SHARE * bound:
            self.warned = True
            log.warning(
                "model %s v%d tracks %d inputs, over %d%% of its bound of %d: new string values "
                "and feature names now share hash buckets, which may cost accuracy. Raise "
                "model.max_indicators (it applies to the next fresh model) if memory allows.",
                model.name,
                model.version,
                tracked,
                round(WARN_SHARE * 100),
                bound,
            )
        return tracked
