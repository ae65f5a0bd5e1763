"""The canary operation on the writer: ``models canary V --share S``, ``--abort``, and its status.

The command picks the version to roll out (the live challenger, or any stored version, which
becomes the challenger), gives it the share, announces a ``canary_step`` and checkpoints at once,
so that the rollout is a version of its own (reason ``canary``) that followers load and a replay
starts from. ``--abort`` rolls back (``canary_rollback``, reason ``abort``) and checkpoints too.
The steps after that are the learner's (:mod:`stream_app.core.canary`). :func:`answering` says which
answer (and version) an event gets while a canary runs, the same for the stream and for HTTP.

>>> from stream_app.core.learn import Learner
>>> from stream_app.settings import Settings
>>> canary_status(Learner(Settings())) is None
True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from stream_app.core.events import ModelEvent
from stream_app.core.learn import Learner
from stream_app.core.messages import encode_model_event
from stream_app.core.predict import Prediction, ServingModel
from stream_app.errors import OperationRefused
from stream_app.registry.checkpoint import load_model
from stream_app.worker.operations import CANARY

if TYPE_CHECKING:
    from stream_app.worker.versions import VersionKeeper

__all__ = ["CANARY", "REASON", "answering", "canary_command", "canary_status"]

REASON: Final = "canary"
"""The reason of the version a canary start or abort stores."""
OPERATOR: Final = "operator"
"""The reason of a canary an operator started."""


async def canary_command(keeper: VersionKeeper, body: dict[str, Any]) -> dict[str, Any]:
    """Start (``version``, ``share``) or abort (``abort``) a canary; refuse otherwise."""
    learner = keeper.learner
    if body.get("abort"):
        event = learner.abort_canary()
    else:
        given: Any = body.get("share")
        if type(given) not in (int, float) or not math.isfinite(given):
            raise OperationRefused("a canary needs a share, a number above 0 and below 1")
        share = float(given)
        target, name = body.get("version"), keeper.settings.model.name
        if type(target) is not int or keeper.store.registry.record(name, target) is None:
            raise OperationRefused(f"version {target} is not stored: there is nothing to roll out")
        challenger = learner.challenger
        if challenger is None or challenger.model.version != target:
            model = load_model(keeper.store.registry, name, target).model
            if not 0.0 < share < 1.0:  # check before the challenger is replaced
                raise OperationRefused(f"a canary share is above 0 and below 1; got {share!r}")
            learner.challenge(model)
        event = learner.start_canary(share, OPERATOR)
    await announce(keeper, event)
    await keeper.checkpoint(REASON)
    current = keeper.learner.challenger
    return {
        "model_version": current.model.version if current else learner.serving.model.version,
        "canary": canary_status(keeper.learner),
    }


async def announce(keeper: VersionKeeper, event: ModelEvent) -> None:
    """Publish one of the learner's model events now, as the pipeline would."""
    name = keeper.settings.model.name
    value = encode_model_event(event.kind, name, event.version, **event.fields)
    await keeper.publish(keeper.settings.topics.model_events, name.encode(), value)


def answering(
    learner: Learner, event_id: str, served: Prediction, shadow: Prediction | None
) -> tuple[Prediction, ServingModel]:
    """Return the answer an event gets and the model that gave it: the canary's on its share.

    ``served`` and ``shadow`` are :meth:`Learner.answer`'s. An event whose id hashes below the
    canary's share gets the canary's (the challenger's) answer, as on the stream; every other
    event, and every event while a version is pinned or when the canary had no answer, gets the
    incumbent's.

    >>> from stream_app.settings import Settings
    >>> learner = Learner(Settings())
    >>> answer, model = answering(learner, "e-1", Prediction(True, {}), None)
    >>> answer.prediction, model.version
    (True, 0)
    """
    challenger = learner.challenger
    if shadow is not None and challenger is not None and learner.canary_takes(event_id):
        return shadow, challenger.model
    return served, learner.answering


def canary_status(learner: Learner) -> dict[str, Any] | None:
    """Describe the canary (version, share, both qualities, why it waits) for /health, /models."""
    canary, challenger = learner.canary, learner.challenger
    if canary is None or challenger is None:
        return None
    return {"version": challenger.model.version, **canary.fields(), "waiting": canary.waiting}
