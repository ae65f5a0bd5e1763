"""Model events: what happened to a model (drift, promotion, canary steps, a dropped challenger).

The learner returns them and the pipeline publishes them on the ``model-events`` topic
(:func:`stream_app.core.messages.encode_model_event`); the worker adds its own (checkpoint,
rollback, pin). The canary's kinds live with the canary (:mod:`stream_app.core.canary`).

>>> ModelEvent(CHALLENGER_DROPPED, 3, {"reason": DROPPED_LEARNING}).fields
{'reason': 'learn_error'}
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

__all__ = [
    "CHALLENGER_DROPPED",
    "CHALLENGER_STARTED",
    "DROPPED_LEARNING",
    "DROPPED_PREDICTING",
    "ModelEvent",
]

CHALLENGER_STARTED: Final = "challenger_started"
"""The model-event type of a keyed model's challenger, started by its drift (``challenger``
policy). The global model's start shows as its drift and on ``predictions-shadow``; many keys
share ``model-events``, so a key's is said outright."""
CHALLENGER_DROPPED: Final = "challenger_dropped"
"""The model-event type of a challenger that raised and was dropped."""
DROPPED_PREDICTING: Final = "predict_error"
"""Drop reason: the challenger raised while answering in shadow."""
DROPPED_LEARNING: Final = "learn_error"
"""Drop reason: the challenger raised while learning."""


class ModelEvent(NamedTuple):
    """Something that happened to a model, for the ``model-events`` topic."""

    kind: str
    version: int
    fields: dict[str, Any]
