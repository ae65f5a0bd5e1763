"""The factory-change step: what a start does when the configured factory did not build the model.

Each version records the factory that built its model (path and arguments, one canonical string).
When the restored version's differs from ``model.factory`` (with ``model.factory_params``),
``model.on_factory_change`` decides:

- ``challenger``: the stored version keeps serving; a fresh model from the new factory learns in
  shadow from the same labels and takes over by the normal promotion path;
- ``replace``: a fresh model from the new factory serves at once; the writer stores it as a new
  version (reason ``factory_change``), and the old versions stay for rollback;
- ``keep``: the stored version serves, and every start logs a WARNING naming both factories.
  Fresh models (a drift challenger, a reset) come from the serving model's factory too, and a
  challenger from the new factory (an earlier ``challenger`` start's) is dropped.

Every action is announced on ``model-events`` (``factory_changed``). A change is acted on once:
the versions written afterwards record the configured factory and mode, and a restart acts again
only when one of them differs. An operator's rollback to a version of the old factory thus stays,
and a challenger that lost is not started again at every restart.

A model stored before versions recorded their factory is taken to be built by the configured
one (logged once, nothing changes): an upgrade never starts a surprise challenger.

A configured factory that builds a model of another task, or a binary model where the stored one
knows more classes, is refused before anything changes: the worker does not start.

>>> decide("m:lr", "m:tree", "challenger", ("m:lr", "challenger"))
'challenger'
>>> decide("m:lr", "m:tree", "challenger", ("m:tree", "challenger")) is None  # acted on already
True
>>> decide("m:lr", "m:tree", "keep", ("m:tree", "keep"))  # keep says so at every start
'keep'
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from stream_app.core.factory import parse_spec, spec_of
from stream_app.core.learn import Learner
from stream_app.core.predict import ServingModel, fresh_model
from stream_app.errors import ModelError
from stream_app.registry.records import VersionRecord
from stream_app.settings import Settings

__all__ = ["EVENT", "REASON", "FactoryChange", "apply_factory_change", "check_fits", "decide"]

log = logging.getLogger(__name__)

EVENT = "factory_changed"
"""The ``model-events`` type that announces a factory change."""
REASON = "factory_change"
"""The reason of the version a ``replace`` stores."""


class FactoryChange(NamedTuple):
    """A factory change found at start: the two factories, the action, the versions involved."""

    old: str
    new: str
    action: str
    restored: int
    """The stored version the worker restored."""
    challenger: int | None = None
    """The fresh challenger's version (``challenger`` mode)."""

    def fields(self) -> dict[str, Any]:
        """Return the ``model-events`` fields, besides type, model and version.

        >>> FactoryChange("m:lr", "m:tree", "keep", 3).fields()
        {'old_factory': 'm:lr', 'new_factory': 'm:tree', 'action': 'keep', 'restored_version': 3}
        """
        out: dict[str, Any] = {
            "old_factory": self.old,
            "new_factory": self.new,
            "action": self.action,
            "restored_version": self.restored,
        }
        if self.challenger is not None:
            out["challenger_version"] = self.challenger
        return out


def decide(serving: str, configured: str, mode: str, acted_on: tuple[str, str]) -> str | None:
    """Choose this start's action; None for the same factory or a change acted on already.

    ``acted_on`` is what the restored version's writer was configured with: (factory, mode).

    >>> decide("m:lr", "m:lr", "replace", ("", "")) is None
    True
    """
    if serving == configured:
        return None
    if mode == "keep":
        return mode
    return None if acted_on == (configured, mode) else mode


def check_fits(fresh: ServingModel, stored: ServingModel) -> None:
    """Refuse a configured factory whose model cannot take over the stored one's labels.

    >>> from stream_app.settings import ModelSettings
    >>> lr = fresh_model(ModelSettings())
    >>> tree = fresh_model(ModelSettings(factory="stream_app.models:hoeffding_tree"))
    >>> tree.labels.classes = ["cat", "dog", "eel"]
    >>> check_fits(lr, tree)
    Traceback (most recent call last):
    ...
    stream_app.errors.ModelError: model factory 'stream_app.models:logistic_regression' builds a binary classifier but the stored versions know 3 classes
    """  # noqa: E501
    if fresh.task != stored.task:
        raise ModelError(
            f"model factory {fresh.factory!r} builds a {fresh.task} model but the stored "
            f"versions of model {stored.name!r} are {stored.task} models; set model.name to "
            "start a new model, or configure a factory of that task"
        )
    known = stored.labels.classes
    if fresh.labels.binary and len(known) > len([False, True]):
        raise ModelError(
            f"model factory {fresh.factory!r} builds a binary classifier but the stored "
            f"versions know {len(known)} classes"
        )


def apply_factory_change(
    settings: Settings, learner: Learner, record: VersionRecord | None, latest: int
) -> tuple[Settings, FactoryChange | None]:
    """Compare the restored learner's factory with the configured one; act as configured.

    Returns the settings the learner must keep (in ``keep`` mode they name the serving model's
    factory, so that fresh models come from it) and the change to announce, if any. Raises
    :class:`ModelError` before changing anything if the configured factory does not fit.
    ``latest`` is the highest version stored.
    """
    model, configured = learner.serving.model, spec_of(settings.model)
    if record is None:
        return settings, None
    fresh = fresh_model(settings.model, version=0)
    check_fits(fresh, model)
    name = settings.model.name
    if not model.factory:
        log.warning(
            "model %s v%d was stored before versions recorded their factory (its record says "
            "%s): taken to be the configured %s; later changes of model.factory are acted on",
            name,
            record.version,
            record.factory or "nothing",
            configured,
        )
        model.factory = configured
        return settings, None
    mode = settings.model.on_factory_change
    action = decide(
        model.factory, configured, mode, (record.configured_factory, record.on_factory_change)
    )
    if action is None:
        if model.factory != configured:
            log.warning(
                "model %s v%d was built by %s, not by the configured %s: the change was acted on "
                "already (%s), so it serves as restored",
                name,
                record.version,
                model.factory,
                configured,
                mode,
            )
        return settings, None
    change = FactoryChange(model.factory, configured, action, record.version)
    if action == "keep":
        log.warning(
            "model.factory is %s but model %s v%d was built by %s: it keeps serving "
            "(model.on_factory_change = keep)",
            configured,
            name,
            record.version,
            model.factory,
        )
        shadow = learner.challenger
        if shadow is not None and shadow.model.factory == configured:
            learner.challenger = None  # a challenger an earlier start made: it must not take over
            log.warning("the challenger v%d from %s is dropped", shadow.model.version, configured)
        path, params = parse_spec(model.factory)
        kept = settings.replace(model={"factory": path, "factory_params": params})
        learner.settings = kept
        return kept, change
    fresh.version = learner.allocate_version(latest)
    learner.challenge(fresh)
    if action == "replace":
        learner.promote(REASON)
    else:
        change = change._replace(challenger=fresh.version)
    log.warning(
        "model.factory changed from %s to %s: %s (model %s v%d was restored)",
        model.factory,
        configured,
        "a fresh model from it serves now"
        if action == "replace"
        else f"a fresh model from it learns in shadow as v{fresh.version}",
        name,
        record.version,
    )
    return settings, change
