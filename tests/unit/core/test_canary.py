"""Canary rollout without a broker: shares by id hash, steps, rollback, fallback, promotion."""

from __future__ import annotations

from typing import Any

import pytest
from river.datasets import synth

from stream_app.core.canary import CANARY_DONE, CANARY_ROLLBACK, CANARY_STEP, REGRESSED, bucket
from stream_app.core.events import CHALLENGER_DROPPED, ModelEvent
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.predict import ServingModel, fresh_model
from stream_app.errors import OperationRefused
from stream_app.settings import Settings
from tests.unit.core.test_pipeline import Rec, Recorder

SEED = 7
WINDOW = 50


def settings(**overrides: dict[str, Any]) -> Settings:
    sections: dict[str, dict[str, Any]] = {
        "guard": {"enabled": False},
        "drift": {"policy": "none"},
        "rollout": {"window": WINDOW, "max_regression": 0.02},
    }
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values}
    return Settings().replace(**sections)


def sea(n: int, seed: int = SEED) -> list[tuple[dict[str, Any], bool]]:
    rows = synth.SEA(variant=0, seed=seed).take(n)
    return [({f"x{k}": v for k, v in x.items()}, bool(y)) for x, y in rows]


def trained(s: Settings, rows: list[tuple[dict[str, Any], bool]], flip: bool) -> ServingModel:
    """A model that learned ``rows`` (with every label flipped if ``flip``)."""
    model = fresh_model(s.model, version=9)
    for x, y in rows:
        model.estimator.learn_one(x, model.labels.to_model(y != flip))
        model.examples_learned += 1
    return model


def run(learner: Learner, rows: list[tuple[dict[str, Any], bool]]) -> list[ModelEvent]:
    """Serve then learn each row as the pipeline does; return the model events in order."""
    events: list[ModelEvent] = []
    for i, (x, y) in enumerate(rows):
        served, shadow = learner.answer(x)
        events += learner.take_dropped()
        events += learner.learn(LabeledExample(f"e{i}", x, y, served, shadow, float(i))).events
    return events


def test_a_better_version_steps_to_one_and_serves() -> None:
    s = settings()
    learner = Learner(s)
    learner.challenge(trained(s, sea(3000, seed=1), flip=False))
    start = learner.start_canary(0.05, "test")
    assert (start.kind, start.fields["share"], start.fields["from_share"]) == (CANARY_STEP, 0.05, 0)
    events = run(learner, sea(4000))
    kinds = [(e.kind, e.fields.get("share")) for e in events]
    assert kinds == [
        (CANARY_STEP, 0.25),
        (CANARY_STEP, 0.5),
        (CANARY_DONE, 1.0),
        ("promotion", None),
    ]
    step = events[0].fields
    assert step["from_share"] == 0.05 and step["labels_canary"] == WINDOW
    assert step["accuracy_canary"] >= step["accuracy_incumbent"] - 0.02
    assert learner.serving.model.version == 9 and learner.canary is None


def test_a_worse_version_is_rolled_back_without_a_step() -> None:
    s = settings()
    learner = Learner(s)
    learner.challenge(trained(s, sea(3000, seed=1), flip=True))
    learner.start_canary(0.05, "test")
    events = run(learner, sea(3000))
    assert [e.kind for e in events] == [CANARY_ROLLBACK]
    rollback = events[0].fields
    assert rollback["reason"] == REGRESSED and rollback["share"] == 0.05
    assert rollback["accuracy_canary"] < rollback["accuracy_incumbent"] - 0.02
    assert learner.challenger is None and learner.canary is None


def test_shares_hold_within_three_points_over_5000_events() -> None:
    for share in (0.05, 0.25, 0.5):
        taken = sum(bucket(f"event-{i}") < share for i in range(5000)) / 5000
        assert abs(taken - share) <= 0.03, (share, taken)


def pipeline_with_canary(s: Settings, model: ServingModel, share: float) -> Pipeline:
    p = Pipeline(s, Learner(s), Metrics())
    p.output_partitions = 4
    p.learner.challenge(model)
    p.learner.start_canary(share, "test")
    return p


def feature_records(n: int) -> list[Rec]:
    import orjson

    rows = sea(n)
    return [
        Rec("features", 0, i, None, orjson.dumps({"id": f"ev-{i}", "features": x}))
        for i, (x, _) in enumerate(rows)
    ]


def test_every_prediction_names_the_version_that_answered_its_share() -> None:
    s = settings(learn={"enabled": False})
    p = pipeline_with_canary(s, trained(s, sea(500, seed=1), flip=False), 0.25)
    out = Recorder()
    p.features(feature_records(5000), 0.0, out)
    predictions = out.on("predictions")
    assert len(predictions) == 5000
    canary = [q for q in predictions if q["model_version"] == 9]
    assert {q["model_version"] for q in predictions} == {0, 9}
    assert all(bucket(q["id"]) < 0.25 for q in canary)
    assert abs(len(canary) / 5000 - 0.25) <= 0.03
    assert all(q["prediction"] is not None for q in canary)  # the trained canary answered


class Raising:
    """An estimator that answers nothing but errors (a broken canary)."""

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        raise RuntimeError("broken")

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        raise RuntimeError("broken")


def test_a_canary_that_raises_falls_back_to_the_incumbent_and_is_rolled_back() -> None:
    s = settings(learn={"enabled": False})
    model = trained(s, sea(10, seed=1), flip=False)
    model.estimator = Raising()
    p = pipeline_with_canary(s, model, 0.5)
    out = Recorder()
    p.features(feature_records(200), 0.0, out)
    predictions = out.on("predictions")
    assert len(predictions) == 200 and {q["model_version"] for q in predictions} == {0}
    kinds = [(e["type"], e.get("reason")) for e in out.on("model-events")]
    assert kinds == [(CHALLENGER_DROPPED, "predict_error"), (CANARY_ROLLBACK, "predict_error")]
    assert p.learner.canary is None


def test_abort_returns_to_the_incumbent() -> None:
    s = settings()
    learner = Learner(s)
    learner.challenge(trained(s, sea(100, seed=1), flip=False))
    learner.start_canary(0.25, "test")
    event = learner.abort_canary()
    assert (event.kind, event.fields["reason"]) == (CANARY_ROLLBACK, "abort")
    assert learner.challenger is None and not learner.canary_takes("anything")
    with pytest.raises(OperationRefused, match="no canary"):
        learner.abort_canary()


def test_without_labels_a_canary_keeps_its_share_and_says_why() -> None:
    s = settings()
    learner = Learner(s)
    learner.challenge(trained(s, sea(100, seed=1), flip=False))
    learner.start_canary(0.25, "test")
    assert learner.canary is not None
    assert learner.canary.waiting == f"no labels yet on the canary share (0 of {WINDOW})"
    assert learner.canary.share == 0.25


def test_a_challenger_that_wins_in_shadow_enters_by_canary() -> None:
    s = settings(drift={"promotion": "canary", "challenger_window": 100})
    learner = Learner(s)
    for i, (x, y) in enumerate(sea(300, seed=3)):  # the incumbent learns the opposite concept
        served, _ = learner.answer(x)
        learner.learn(LabeledExample(f"w{i}", x, not y, served, None, 0.0))
    learner.challenge(fresh_model(s.model, version=5))
    events = [e for e in run(learner, sea(400)) if e.kind != "drift"]
    assert events[0].kind == CANARY_STEP and events[0].fields["share"] == 0.05
    assert events[0].fields["reason"] == "won_in_shadow"
    assert "promotion" not in [e.kind for e in events[:1]]
    assert learner.canary is not None or any(e.kind == CANARY_ROLLBACK for e in events)


def test_the_canary_survives_a_snapshot() -> None:
    s = settings()
    learner = Learner(s)
    learner.challenge(trained(s, sea(100, seed=1), flip=False))
    learner.start_canary(0.25, "test")
    restored = Learner.restore(s, learner.snapshot(), 20)
    assert restored.canary is not None and restored.canary.share == 0.25
    assert restored.canary_takes("ev-1") == learner.canary_takes("ev-1")


def test_shares_must_be_inside_zero_and_one() -> None:
    s = settings()
    learner = Learner(s)
    with pytest.raises(OperationRefused, match="no challenger"):
        learner.start_canary(0.05, "test")
    learner.challenge(fresh_model(s.model, version=3))
    for share in (0.0, 1.0, 1.5):
        with pytest.raises(OperationRefused, match="above 0 and below 1"):
            learner.start_canary(share, "test")


def test_what_is_kept_for_a_label_names_the_version_whose_answer_it_keeps() -> None:
    s = settings()
    p = pipeline_with_canary(s, trained(s, sea(500, seed=1), flip=False), 0.5)
    out = Recorder()
    records = feature_records(400)
    p.features(records, 0.0, out)
    from_canary = {q["id"] for q in out.on("predictions") if q["model_version"] == 9}
    assert from_canary  # the canary answered some events, and the incumbent's answer is kept
    kept = [p.pending.take(0, f"ev-{i}", 1.0) for i in range(len(records))]
    versions = {k.model_version for k in kept if k is not None}  # events at home: kept here
    joined = {m["model_version"] for m in out.on(s.join_topic)}  # the others: sent home
    assert versions and joined and versions | joined == {0}
