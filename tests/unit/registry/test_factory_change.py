"""A changed model factory at start: what each mode does, what versions record, what is refused."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.factory import spec_of
from stream_app.core.learn import Learner
from stream_app.core.predict import Prediction, fresh_model
from stream_app.errors import ConfigError, ModelError
from stream_app.registry.checkpoint import Checkpointer, encode_inline, restore_learner
from stream_app.registry.factory_change import apply_factory_change
from stream_app.registry.records import Registry, VersionRecord
from stream_app.settings import ModelSettings, Settings, load_settings
from stream_app.tools.marks import marks
from stream_app.tools.view import Tally, announce

LR = "stream_app.models:logistic_regression"
TREE = "stream_app.models:hoeffding_tree"
BASE = Settings().replace(guard={"enabled": False}, drift={"policy": "none"})


def configured(factory: str, mode: str = "challenger", **model: Any) -> Settings:
    return BASE.replace(model={"factory": factory, "on_factory_change": mode, **model})


def learn(learner: Learner, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        x = {"x": float(i % 7), "y": float(i % 3)}
        learner.learn(LabeledExample(f"e{i}", x, i % 7 > 3, Prediction(None, {}), None, 0.0))


def checkpoint(settings: Settings, learner: Learner, registry: Registry) -> list[VersionRecord]:
    """Store the learner as the writer does; return the records written."""
    checkpointer = Checkpointer(settings, encode_inline)
    snapshot = checkpointer.snapshot(learner, registry)
    done = asyncio.run(checkpointer.checkpoint(snapshot, registry, "periodic"))
    for key, value in done.writes:
        registry.apply(key, value)
    return done.records


def stored(settings: Settings = BASE, n: int = 50) -> Registry:
    """A registry holding one version learned with ``settings``'s factory."""
    registry, learner = Registry(), Learner(settings)
    learn(learner, n)
    checkpoint(settings, learner, registry)
    return registry


def restart(settings: Settings, registry: Registry) -> tuple[Learner, Any, Settings]:
    learner, record, _ = restore_learner(settings, registry)
    kept, change = apply_factory_change(settings, learner, record, registry.latest("default"))
    return learner, change, kept


def test_versions_record_the_factory_that_built_their_model() -> None:
    registry = stored()
    (record,) = registry.versions("default")
    assert (record.factory, record.configured_factory, record.on_factory_change) == (
        LR,
        LR,
        "challenger",
    )


def test_challenger_mode_keeps_serving_and_a_fresh_model_learns_in_shadow() -> None:
    registry = stored()
    settings = configured(TREE, "challenger")
    learner, change, kept = restart(settings, registry)
    assert kept is settings
    assert (change.old, change.new, change.action, change.restored) == (LR, TREE, "challenger", 1)
    assert learner.serving.model.factory == LR and learner.serving.model.version == 1
    assert learner.challenger is not None and learner.challenger.model.factory == TREE
    assert change.challenger == learner.challenger.model.version > 1

    learn(learner, 20, start=100)
    serving, shadow = checkpoint(settings, learner, registry)
    assert (serving.status, serving.factory) == ("serving", LR)
    assert (shadow.status, shadow.factory) == ("shadow", TREE)
    assert serving.configured_factory == shadow.configured_factory == TREE

    # Acted on once: the next start finds the change handled and the duel still going.
    again, change, _ = restart(settings, registry)
    assert change is None
    assert again.challenger is not None and again.challenger.model.factory == TREE


def test_replace_mode_serves_a_fresh_model_as_a_new_version() -> None:
    registry = stored()
    learner, change, _ = restart(configured(TREE, "replace"), registry)
    assert change.action == "replace" and change.challenger is None
    model = learner.serving.model
    assert model.factory == TREE and model.examples_learned == 0 and model.version > 1
    assert learner.challenger is None
    (record, *_) = checkpoint(configured(TREE, "replace"), learner, registry)
    assert record.factory == TREE and record.parent is None  # a fresh model descends from nothing


def test_keep_mode_serves_the_stored_model_and_builds_fresh_ones_from_its_factory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = stored()
    with caplog.at_level(logging.WARNING):
        learner, change, kept = restart(configured(TREE, "keep"), registry)
    assert change.action == "keep" and learner.challenger is None
    assert kept.model.factory == LR and learner.settings.model.factory == LR
    assert any(LR in m and TREE in m and "keep" in m for m in caplog.messages), caplog.messages
    learn(learner, 10, start=100)
    (record,) = checkpoint(configured(TREE, "keep"), learner, registry)
    assert (record.factory, record.configured_factory) == (LR, TREE)
    # ...and it says so again at every start.
    _, change, _ = restart(configured(TREE, "keep"), registry)
    assert change is not None and change.action == "keep"


def ran_with(mode: str) -> Registry:
    """A stored logistic regression, then a start with the tree in ``mode`` that checkpointed."""
    registry = stored()
    learner, _, _ = restart(configured(TREE, mode), registry)
    learn(learner, 10, start=100)
    checkpoint(configured(TREE, mode), learner, registry)
    return registry


def test_keep_after_challenger_drops_the_new_factorys_challenger() -> None:
    learner, change, _ = restart(configured(TREE, "keep"), ran_with("challenger"))
    assert change.action == "keep" and learner.challenger is None
    assert learner.serving.model.factory == LR


def test_a_new_mode_for_the_same_factory_is_acted_on() -> None:
    learner, change, _ = restart(configured(TREE, "replace"), ran_with("keep"))
    assert change.action == "replace" and learner.serving.model.factory == TREE


def test_factory_params_are_part_of_the_factory() -> None:
    tree = "river.tree:HoeffdingTreeClassifier"
    registry = stored(configured(tree, factory_params={"grace_period": 50}))
    assert registry.versions("default")[0].factory == f'{tree} {{"grace_period":50}}'
    _, change, _ = restart(configured(tree, factory_params={"grace_period": 50}), registry)
    assert change is None
    learner, change, _ = restart(configured(tree, factory_params={"grace_period": 20}), registry)
    assert change.action == "challenger"
    assert learner.challenger is not None
    assert learner.challenger.model.estimator.grace_period == 20


def test_a_version_stored_before_factories_were_recorded_is_taken_as_the_configured_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, learner = Registry(), Learner(BASE)
    learn(learner, 30)
    learner.serving.model.__dict__.pop("factory")  # as an older release pickled it
    checkpoint(BASE, learner, registry)
    with caplog.at_level(logging.WARNING):
        learner, change, _ = restart(configured(TREE), registry)
    assert change is None and learner.challenger is None  # no surprise challenger
    assert learner.serving.model.factory == TREE
    assert [m for m in caplog.messages if "before versions recorded" in m], caplog.messages


def test_a_factory_of_another_task_is_refused_and_nothing_changes() -> None:
    registry = stored()
    before = [r.to_json() for r in registry.versions("default")]
    learner, record, _ = restore_learner(BASE, registry)
    regression = configured("stream_app.models:linear_regression")
    with pytest.raises(ModelError, match="builds a regression model but the stored versions"):
        apply_factory_change(regression, learner, record, registry.latest("default"))
    assert learner.challenger is None and learner.serving.model.factory == LR
    assert [r.to_json() for r in registry.versions("default")] == before


def test_a_binary_factory_is_refused_where_the_stored_model_knows_more_classes() -> None:
    settings = configured(TREE)
    registry, learner = Registry(), Learner(settings)
    for i, label in enumerate(["cat", "dog", "eel"] * 10):
        learner.learn(
            LabeledExample(f"e{i}", {"x": float(i % 3)}, label, Prediction(None, {}), None, 0.0)
        )
    checkpoint(settings, learner, registry)
    with pytest.raises(ModelError, match="binary classifier but the stored versions know 3"):
        restart(configured(LR), registry)


def test_on_factory_change_is_checked_and_params_come_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="on_factory_change must be one of"):
        Settings().replace(model={"on_factory_change": "swap"})
    env = {"STREAM_APP_MODEL__FACTORY_PARAMS": "{ grace_period = 50 }"}
    settings = load_settings(env=env, files=[])
    assert settings.model.factory_params == {"grace_period": 50}
    assert spec_of(settings.model) == LR + ' {"grace_period":50}'
    with pytest.raises(ModelError, match="failed: TypeError"):
        fresh_model(ModelSettings(factory=LR, factory_params={"grace_period": 50}))


def test_the_live_view_and_the_report_mark_the_change() -> None:
    event = {
        "type": "factory_changed",
        "model": "default",
        "model_version": 4,
        "old_factory": LR,
        "new_factory": TREE,
        "action": "replace",
        "restored_version": 3,
    }
    tally = Tally(started=0.0)
    text = announce(event, tally)
    assert text == f"factory changed: {LR} -> {TREE}, v4 replaces v3"
    assert tally.factory_changes == [event]
    (mark,) = marks([(1.0, event)], [])
    assert mark.kind == "factory_changed" and TREE in mark.text
