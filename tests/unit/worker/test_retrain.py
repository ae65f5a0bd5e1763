"""Retraining without a broker: when the policy fires, and what a retrain trains."""

from __future__ import annotations

from typing import NamedTuple

from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.learning_log import encode_log_batch, encode_log_entry
from stream_app.core.predict import NO_ANSWER, Prediction, fresh_model
from stream_app.models import logistic_regression
from stream_app.registry.replay import logged_examples
from stream_app.settings import RetrainSettings, Settings
from stream_app.worker.retrain import RetrainPolicy, install, train
from tests.unit.core.test_batch import rows


class Rec(NamedTuple):
    offset: int
    value: bytes


def test_a_schedule_fires_by_count_and_by_time() -> None:
    by_count = RetrainPolicy(RetrainSettings(policy="schedule", every_examples=50), now=0.0)
    assert [by_count.due(n, 0, now=0.0) for n in (49, 50)] == [None, "schedule"]
    by_count.started(50, now=0.0)
    assert by_count.due(99, 0, now=0.0) is None and by_count.due(100, 0, 0.0) == "schedule"
    by_time = RetrainPolicy(RetrainSettings(policy="schedule", every_s=60.0), now=0.0)
    assert by_time.due(10**6, 0, now=59.9) is None and by_time.due(0, 0, now=60.0) == "schedule"
    assert RetrainPolicy(RetrainSettings(), now=0.0).due(10**9, 10**9, now=10**9) is None


def test_the_learner_counts_labels_in_a_row_beyond_the_quality_floor() -> None:
    settings = Settings().replace(
        guard={"enabled": False},
        learn={"quality_window": 10},
        retrain={"policy": "quality_floor", "quality_floor": 0.8, "patience": 5},
    )
    learner = Learner(settings)
    policy = RetrainPolicy(settings.retrain, now=0.0)
    answer = Prediction(True, {"true": 0.9})

    def label(i: int, right: bool) -> int:
        learner.learn(LabeledExample(f"e{i}", {"x": 1.0}, right, answer, None, 0.0))
        return learner.beyond_floor

    assert [label(i, True) for i in range(10)] == [0] * 10  # accuracy 1.0
    counts = [label(10 + i, False) for i in range(8)]  # accuracy falls: 0.9, 0.8, 0.7, ...
    assert counts == [0, 0, 1, 2, 3, 4, 5, 6]
    assert policy.due(learner.examples_seen, learner.beyond_floor, now=0.0) == "quality_floor"
    assert label(18, True) == 7 and [label(19 + i, True) for i in range(9)][-1] == 0  # recovered
    plain = Learner(Settings().replace(guard={"enabled": False}))
    plain.learn(LabeledExample("e", {"x": 1.0}, False, answer, None, 0.0))
    assert plain.beyond_floor == 0  # counted only under the quality_floor policy


def test_a_retrain_equals_a_fresh_river_loop_over_the_log_tail() -> None:
    data = [(x, sum(x.values()) > 0) for x in rows(300, seed=5)]
    examples = [
        LabeledExample(f"e{i}", x, y, NO_ANSWER, None, float(i)) for i, (x, y) in enumerate(data)
    ]
    old = [Rec(i, encode_log_entry(e)) for i, e in enumerate(examples[:150])]  # one per message
    batches = [examples[i : i + 25] for i in range(150, 300, 25)]  # then one per batch
    new = [Rec(150 + i, m) for i, b in enumerate(batches) for m in encode_log_batch(b, 1 << 20)]
    tail = logged_examples([*old, *new])[100:]
    assert [item.example for item in tail] == examples[100:] and tail[-1].offset == 155
    model = train(Settings(), tail, classes=[False, True])
    reference = logistic_regression()
    for x, y in data[100:]:
        reference.learn_one(x, y)
    assert model.examples_learned == 200 and model.labels.classes == [False, True]
    for x, _ in data[:20]:
        got, want = model.estimator.predict_proba_one(x), reference.predict_proba_one(x)
        assert abs(got[True] - want[True]) <= 1e-9


def test_a_quality_floor_waits_for_the_last_challenger_to_have_its_duel() -> None:
    window = 20
    settings = Settings().replace(
        guard={"enabled": False},
        drift={"policy": "none", "challenger_window": window},
        retrain={"policy": "quality_floor", "quality_floor": 0.8, "patience": 5},
    )
    learner = Learner(settings)
    policy = RetrainPolicy(settings.retrain, now=0.0)
    learner.beyond_floor = 5
    assert policy.begin(learner, now=0.0) == "quality_floor" and learner.beyond_floor == 0
    version = install(learner, fresh_model(settings.model, version=0), stored_latest=3)
    assert learner.challenger is not None and learner.challenger.model.version == version == 4
    learner.beyond_floor = 5  # still below the floor: the serving model has not been replaced
    learner.challenger.labels = window - 1
    assert policy.begin(learner, now=0.0) is None and learner.beyond_floor == 5
    learner.challenger.labels = window  # judged over a full window and not promoted: retrain
    assert policy.begin(learner, now=0.0) == "quality_floor" and learner.beyond_floor == 0
