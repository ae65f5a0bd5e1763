"""Micro-batch inference: event mode's answers for the same model state; learning per event."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.metrics import Metrics
from stream_app.core.pipeline import Pipeline
from stream_app.core.predict import ServingModel, fresh_model, predict_many, predict_one
from stream_app.models import hoeffding_tree
from stream_app.settings import ModelSettings, Settings
from tests.unit.core.test_pipeline import Rec, Recorder

FEATURES = 15


def rows(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{f"f{i}": rng.gauss(0.0, 1.0) for i in range(FEATURES)} for _ in range(n)]


def trained(factory: str, n: int = 2000) -> ServingModel:
    model = fresh_model(ModelSettings(factory=f"stream_app.models:{factory}"))
    for x in rows(n, seed=1):
        y: Any = x["f0"] + x["f1"] > 0 if model.task == "classification" else x["f0"] * 3.0
        model.estimator.learn_one(x, model.labels.to_model(y))
        model.examples_learned += 1
    return model


@pytest.mark.parametrize("factory", ["logistic_regression", "hoeffding_tree", "linear_regression"])
@pytest.mark.parametrize("min_rows", [1, 10_000])  # vectorised call, and the per-event fallback
def test_a_batch_gets_the_answers_of_event_by_event_prediction(factory: str, min_rows: int) -> None:
    model = trained(factory)
    batch = rows(600, seed=2)
    one = [predict_one(model, x) for x in batch]
    many = predict_many(model, batch, min_rows=min_rows)
    assert [a.prediction for a in many] == pytest.approx([a.prediction for a in one], abs=1e-9)
    for a, b in zip(many, one, strict=True):
        assert a.proba.keys() == b.proba.keys()
        assert a.proba == pytest.approx(b.proba, abs=1e-12)


def test_mixed_or_string_features_fall_back_to_event_by_event() -> None:
    model = trained("logistic_regression")
    batch: list[dict[str, Any]] = [*rows(3, seed=3), {"f0": 1.0, "color": "red"}, {"f0": True}]
    many = predict_many(model, batch, min_rows=1)
    assert many == [predict_one(model, x) for x in batch]


def test_an_untrained_model_has_no_opinion_on_a_batch() -> None:
    model = fresh_model(ModelSettings())
    assert [a.prediction for a in predict_many(model, rows(3, seed=4), min_rows=1)] == [None] * 3


def records(batch: list[dict[str, float]], labelled: bool) -> list[Rec]:
    out = []
    for i, x in enumerate(batch):
        body: dict[str, Any] = {"id": f"e{i}", "features": x}
        if labelled:
            body["label"] = x["f0"] + x["f1"] > 0
        out.append(Rec("features", 0, i, f"e{i}".encode(), orjson.dumps(body)))
    out.insert(7, Rec("features", 0, 999, b"bad", b"{not json"))
    return out


def serve(mode: str, recs: list[Rec], **inference: Any) -> tuple[Recorder, Pipeline]:
    settings = Settings().replace(
        guard={"enabled": False},
        inference={"mode": mode, "max_batch": 250, "many_min_rows": 100, **inference},
    )
    pipeline = Pipeline(settings, Learner(settings, trained("logistic_regression")), Metrics())
    pipeline.output_partitions = 4
    out = Recorder()
    pipeline.features(recs, 0.0, out)
    return out, pipeline


def test_event_and_batch_mode_emit_the_same_predictions_for_the_same_model_state() -> None:
    recs = records(rows(1000, seed=5), labelled=False)
    event_out, _ = serve("event", recs)
    batch_out, _ = serve("batch", recs)
    strip = ("served_at", "latency_ms", "proba")
    event_preds = [
        {k: v for k, v in p.items() if k not in strip} for p in event_out.on("predictions")
    ]
    batch_preds = [
        {k: v for k, v in p.items() if k not in strip} for p in batch_out.on("predictions")
    ]
    assert len(event_preds) == 1000 and event_preds == batch_preds
    for a, b in zip(event_out.on("predictions"), batch_out.on("predictions"), strict=True):
        assert a["proba"] == pytest.approx(b["proba"], abs=1e-12)
    assert len(batch_out.on("dead-letters")) == len(event_out.on("dead-letters")) == 1


def test_batch_mode_learns_every_inline_label_in_order_with_learn_one() -> None:
    recs = records(rows(1000, seed=6), labelled=True)
    _, event_p = serve("event", recs)
    _, batch_p = serve("batch", recs)
    assert event_p.metrics.labels_learned._value.get() == 1000
    assert batch_p.metrics.labels_learned._value.get() == 1000
    # learn_one in the same order: the two learners end in the same state
    probe = rows(50, seed=7)
    assert [event_p.learner.answer(x)[0] for x in probe] == [
        batch_p.learner.answer(x)[0] for x in probe
    ]


def test_learn_many_learns_a_batch_at_once_and_is_a_different_model() -> None:
    recs = records(rows(1000, seed=8), labelled=True)
    _, per_event = serve("batch", recs)
    _, many = serve("batch", recs, learn_many=True)
    assert many.learner.serving.deferred == []  # nothing left waiting after the batch
    assert (
        many.learner.serving.model.examples_learned
        == per_event.learner.serving.model.examples_learned
    )
    probe = rows(50, seed=9)
    a = [per_event.learner.answer(x)[0].proba["true"] for x in probe]
    b = [many.learner.answer(x)[0].proba["true"] for x in probe]
    assert a != pytest.approx(b, abs=1e-6)  # one gradient step per batch: not learn_one's model


def test_learn_many_falls_back_to_learn_one_for_models_without_it() -> None:
    settings = Settings().replace(
        guard={"enabled": False},
        model={"factory": "stream_app.models:hoeffding_tree"},
        inference={"mode": "batch", "learn_many": True},
    )
    learner = Learner(settings)
    for i, x in enumerate(rows(300, seed=10)):
        learner.learn(LabeledExample(f"e{i}", x, x["f0"] > 0, learner.answer(x)[0], None, 0.0))
    assert learner.serving.deferred is not None and len(learner.serving.deferred) > 0
    learner.flush()
    assert learner.serving.deferred == []
    assert learner.serving.model.estimator.n_nodes >= 1
    reference = hoeffding_tree()
    for x in rows(300, seed=10):
        reference.learn_one(x, x["f0"] > 0)
    probe = rows(20, seed=11)
    assert [learner.answer(x)[0].proba for x in probe] == [
        {str(k).lower(): v for k, v in reference.predict_proba_one(x).items()} for x in probe
    ]
