"""The learner: prequential scoring, idempotence, drift on a known change, challenger and reset."""

from __future__ import annotations

import copy
import pickle
import random

import pytest
from river.datasets import synth

from stream_app import reasons
from stream_app.core.drift import DriftMonitor, build_detector
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.predict import Prediction
from stream_app.core.quality import Quality, error_of
from stream_app.errors import ConfigError, OperationRefused, RejectedMessage
from stream_app.settings import DriftSettings, Settings

CHANGE_AT = 5000


def drifting_stream(seed: int, n: int = 10_000) -> list[tuple[dict[str, float], bool]]:
    """SEA variant 0 then 3, a sudden change at CHANGE_AT (width 50: River overflows below ~40)."""
    stream = synth.ConceptDriftStream(
        stream=synth.SEA(variant=0, seed=seed),
        drift_stream=synth.SEA(variant=3, seed=seed + 1),
        position=CHANGE_AT,
        width=50,
        seed=seed,
    )
    return list(stream.take(n))


def replay(learner: Learner, data: list[tuple[dict[str, float], bool]]) -> tuple[list[bool], list]:
    hits, events = [], []
    for i, (x, y) in enumerate(data):
        served, shadow = learner.answer(x)
        hits.append(served.prediction == y)
        outcome = learner.learn(LabeledExample(f"e{i}", x, y, served, shadow, float(i)))
        events += [(i, event) for event in outcome.events]
    return hits, events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_drift_reported_after_the_change_never_before(seed: int) -> None:
    learner = Learner(Settings().replace(guard={"enabled": False}, drift={"policy": "none"}))
    _, events = replay(learner, drifting_stream(seed))
    drifts = [i for i, event in events if event.kind == "drift"]
    assert drifts, "no drift reported"
    assert all(i >= CHANGE_AT - 50 for i in drifts), drifts  # width 50: the change starts there
    assert drifts[0] - CHANGE_AT <= 1000
    first = next(event for _, event in events if event.kind == "drift")
    assert first.fields["detector"] == "ADWIN" and first.fields["examples_seen"] == drifts[0] + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_challenger_takes_over_and_recovers_pre_drift_accuracy(seed: int) -> None:
    learner = Learner(Settings().replace(guard={"enabled": False}))
    hits, events = replay(learner, drifting_stream(seed, n=12_000))
    promotions = [(i, event) for i, event in events if event.kind == "promotion"]
    assert len(promotions) == 1
    at, promotion = promotions[0]
    assert promotion.version == 1 and promotion.fields["previous_version"] == 0
    assert learner.serving.model.version == 1 and learner.challenger is None
    before = sum(hits[CHANGE_AT - 2000 : CHANGE_AT]) / 2000
    after = sum(hits[at : at + 2000]) / 2000
    assert after >= before - 0.03, (before, after)


def test_reset_policy_replaces_the_model_at_the_drift() -> None:
    learner = Learner(Settings().replace(guard={"enabled": False}, drift={"policy": "reset"}))
    _, events = replay(learner, drifting_stream(1))
    kinds = [event.kind for _, event in events]
    assert kinds[:2] == ["drift", "promotion"]
    assert events[1][1].fields["reason"] == "reset"
    assert learner.serving.model.version >= 1


def test_stationary_stream_has_no_drift() -> None:
    learner = Learner(Settings().replace(guard={"enabled": False}))
    data = list(synth.SEA(variant=0, seed=9).take(8000))
    _, events = replay(learner, data)
    assert events == []
    assert learner.monitor.ignored >= 0  # improvements during warm-up are not drifts


def test_each_id_is_learned_once_and_the_label_checked_against_binary_classes() -> None:
    learner = Learner(Settings().replace(guard={"enabled": False}))
    none = Prediction(None, {})
    assert learner.learn(LabeledExample("a", {"x": 1.0}, "spam", none, None, 0.0)).learned
    again = learner.learn(LabeledExample("a", {"x": 1.0}, "ham", none, None, 1.0))
    assert (again.learned, again.reason) == (False, reasons.DUPLICATE_LABEL)
    assert learner.has_learned("a") and learner.serving.model.examples_learned == 1
    learner.learn(LabeledExample("b", {"x": 2.0}, "ham", none, None, 2.0))
    with pytest.raises(RejectedMessage) as caught:
        learner.learn(LabeledExample("c", {"x": 3.0}, "eggs", none, None, 3.0))
    assert caught.value.reason == reasons.UNKNOWN_LABEL
    assert not learner.has_learned("c")  # a refused label leaves no trace


def test_learned_ids_are_forgotten_after_the_ttl() -> None:
    learner = Learner(Settings().replace(guard={"enabled": False}, learn={"pending_ttl_s": 10.0}))
    learner.learn(LabeledExample("a", {"x": 1.0}, True, Prediction(None, {}), None, 0.0))
    learner.learn(LabeledExample("b", {"x": 1.0}, True, Prediction(None, {}), None, 11.0))
    assert not learner.has_learned("a") and learner.has_learned("b")


def test_quality_and_error() -> None:
    q = Quality("regression", window=3)
    for e in (10.0, 1.0, 2.0, 3.0):
        q.add(e)
    assert q.value == 2.0 and q.metric == "mae" and q.full
    better = Quality("regression", window=3)
    better.add(1.0)
    assert better.better_than(q, margin=0.5) and not better.better_than(q, margin=1.5)
    assert error_of("classification", None, True) is None


def test_detector_configuration() -> None:
    assert type(build_detector("DDM", {})).__name__ == "DDM"
    with pytest.raises(ConfigError, match="not a detector"):
        build_detector("Nope", {})
    with pytest.raises(ConfigError, match="do not fit"):
        build_detector("ADWIN", {"nope": 1})


def test_improvement_is_not_drift() -> None:
    monitor = DriftMonitor(DriftSettings(warmup=100, compare_window=50))
    drops = [monitor.update(e) for e in [1.0] * 1000 + [0.0] * 1000]
    assert not any(drops) and monitor.ignored >= 1


def agrawal(n: int, seed: int = 1) -> list[tuple[dict[str, object], int]]:
    return list(synth.Agrawal(classification_function=2, seed=seed).take(n))


def test_a_configured_challenger_proves_itself_in_shadow_then_serves() -> None:
    settings = Settings().replace(
        guard={"enabled": False}, model={"challenger_factory": "stream_app.models:hoeffding_tree"}
    )
    learner = Learner(settings)
    assert learner.challenger is not None and learner.challenger.model.version == 1
    _, events = replay(learner, agrawal(6000))  # type: ignore[arg-type]
    promotions = [event for _, event in events if event.kind == "promotion"]
    assert len(promotions) == 1 and promotions[0].fields["reason"] == "challenger"
    assert promotions[0].fields["accuracy_challenger"] > promotions[0].fields["accuracy_previous"]
    assert learner.serving.model.version == 1 and learner.challenger is None


def test_a_challenger_needs_the_margin_and_can_be_promoted_by_hand() -> None:
    settings = Settings().replace(
        guard={"enabled": False},
        model={"challenger_factory": "stream_app.models:hoeffding_tree"},
        drift={"promotion_margin": 0.9},
    )
    learner = Learner(settings)
    _, events = replay(learner, agrawal(3000))  # type: ignore[arg-type]
    assert not [e for _, e in events if e.kind == "promotion"]
    event = learner.promote("manual")
    assert event.kind == "promotion" and learner.serving.model.version == 1
    with pytest.raises(OperationRefused, match="no challenger"):
        learner.promote("manual")


def test_a_challenger_of_another_task_is_refused() -> None:
    settings = Settings().replace(
        model={"challenger_factory": "stream_app.models:linear_regression"}
    )
    with pytest.raises(OperationRefused, match="regression model"):
        Learner(settings)


def flipped_stream(seed: int, n: int, noise: float) -> list[tuple[dict[str, float], bool, bool]]:
    """(features, true label, given label): SEA 0 -> 3 with ``noise`` of the labels flipped."""
    rng = random.Random(seed)
    return [(x, y, (not y) if rng.random() < noise else y) for x, y in drifting_stream(seed, n)]


def test_the_model_takes_the_witness_state_after_a_change_never_under_steady_noise() -> None:
    settings = Settings().replace(drift={"policy": "none"}, guard={"witness_span": 1000})
    learner = Learner(settings)
    contender = learner.serving
    adopted, held = [], 0
    for i, (x, _, label) in enumerate(flipped_stream(1, 8000, noise=0.2)):
        served, shadow = learner.answer(x)
        before = contender.model.estimator
        outcome = learner.learn(LabeledExample(f"e{i}", x, label, served, shadow, float(i)))
        held += outcome.reason == reasons.NOISY_LABEL
        if contender.model.estimator is not before:
            adopted.append(i)
            # unguarded since a copy one to two spans back: it learned what the guard held out
            since_copy = contender.model.examples_learned - contender.witness.learned_at_copy
            assert 1000 < since_copy <= 2000
    assert held > 1000
    assert adopted and all(i >= CHANGE_AT for i in adopted)  # never under steady noise
    assert adopted[0] < CHANGE_AT + 1000


def test_the_witness_is_the_model_unguarded_since_its_copy() -> None:
    learner = Learner(Settings().replace(drift={"policy": "none"}, guard={"witness_span": 500}))
    contender = learner.serving
    witness = contender.witness
    assert witness is not None
    unguarded = copy.deepcopy(contender.model.estimator)  # River's own loop, every label
    for i, (x, _, label) in enumerate(flipped_stream(2, 400, noise=0.2)):
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"e{i}", x, label, served, shadow, float(i)))
        unguarded.learn_one(x, label)
    rebuilt, replayed = witness.rebuild()  # no turn yet: from the first copy, the fresh model
    assert len(replayed) == 400 and witness.learned_at_copy == 0
    probe = flipped_stream(3, 50, noise=0.0)
    for x, _, _ in probe:
        expected = unguarded.predict_proba_one(x)
        assert rebuilt.predict_proba_one(x) == pytest.approx(expected, abs=1e-9)


def test_a_witness_copy_in_batch_mode_learns_what_the_model_has_not_learned_yet() -> None:
    settings = Settings().replace(
        drift={"policy": "none"},
        guard={"witness_span": 10},
        inference={"mode": "batch", "learn_many": True},
    )
    learner = Learner(settings)
    contender = learner.serving
    unguarded = copy.deepcopy(contender.model.estimator)
    for i, (x, _, label) in enumerate(flipped_stream(4, 25, noise=0.0)):
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"e{i}", x, label, served, shadow, float(i)))
        unguarded.learn_one(x, label)
    assert contender.deferred is not None and len(contender.deferred) == 25  # none learned yet
    witness = contender.witness
    assert witness is not None
    rebuilt, replayed = witness.rebuild()  # from the copy at label 10, which learned 1-10
    assert len(replayed) == 15 and witness.learned_at_copy == 10
    for x, _, _ in flipped_stream(5, 20, noise=0.0):
        expected = unguarded.predict_proba_one(x)
        assert rebuilt.predict_proba_one(x) == pytest.approx(expected, abs=1e-9)


def test_the_witness_is_not_stored_and_a_restored_learner_starts_one() -> None:
    learner = Learner(Settings())
    for i, (x, _, label) in enumerate(flipped_stream(1, 300, noise=0.2)):
        served, shadow = learner.answer(x)
        learner.learn(LabeledExample(f"e{i}", x, label, served, shadow, float(i)))
    stored = pickle.loads(pickle.dumps(learner.snapshot()))
    assert stored["serving"].witness is None  # up to two spans of examples: not in checkpoints
    restored = Learner.restore(Settings(), stored, next_version=1)
    witness = restored.serving.witness
    assert witness is not None
    assert witness.learned_at_copy == restored.serving.model.examples_learned
    assert learner.serving.witness is not None  # pickling left the live one alone


def test_no_witness_when_switched_off_or_without_the_noisy_label_rule() -> None:
    for guard in ({"witness": False}, {"noisy_labels": False}, {"enabled": False}):
        assert Learner(Settings().replace(guard=guard)).serving.witness is None
    learner = Learner(Settings())
    assert learner.serving.witness is not None
    off = Settings().replace(guard={"witness": False})
    restored = Learner.restore(off, learner.snapshot(), next_version=1)
    assert restored.serving.witness is None
    assert Learner.restore(Settings(), restored.snapshot(), 1).serving.witness is not None


def test_the_answering_model_is_the_pinned_version_else_the_serving_one() -> None:
    learner = Learner(Settings())
    assert learner.answering is learner.serving.model
    pinned = Learner(Settings()).serving.model
    learner.pinned = pinned
    assert learner.answering is pinned
    learner.pinned = None
    assert learner.answering is learner.serving.model
