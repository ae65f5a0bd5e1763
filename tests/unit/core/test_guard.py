"""The noise guard: each rule fires on the case built for it, stays silent on clean data, and
the cap releases under a real concept change."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app import reasons
from stream_app.core.guard import NoiseGuard
from stream_app.settings import GuardSettings

CONFIDENT = {"a": 0.95, "b": 0.05}


def warmed(
    task: str = "classification", n: int = 300, seed: int = 1, **overrides: object
) -> NoiseGuard:
    guard = NoiseGuard(GuardSettings(**overrides), task)  # type: ignore[arg-type]
    rng = random.Random(seed)
    for _ in range(n):
        x = {"x": rng.gauss(0, 1), "y": rng.gauss(10, 2), "c": "red"}
        if task == "classification":
            assert guard.review(x, "a", CONFIDENT).reason is None
        else:
            label = rng.gauss(0, 1)
            assert guard.review(x, label, label + rng.gauss(0, 0.5)).reason is None
    return guard


def test_feature_outlier_fires_after_warmup_only() -> None:
    fresh = NoiseGuard(GuardSettings(), "classification")
    assert fresh.review({"x": 1e6}, "a", CONFIDENT).reason is None  # still warming up
    guard = warmed()
    verdict = guard.review({"x": 0.1, "y": 10.0 + 2 * 20}, "a", CONFIDENT)  # y is 20 sd out
    assert verdict.reason == reasons.FEATURE_OUTLIER and "'y'" in verdict.detail
    assert guard.review({"x": 0.5, "y": 11.0}, "a", CONFIDENT).reason is None


def test_outliers_do_not_widen_the_statistics() -> None:
    guard = warmed()
    for _ in range(20):  # 20 flagged in a window of 500: under the cap, all held out
        assert guard.review({"x": 50.0}, "a", CONFIDENT).reason == reasons.FEATURE_OUTLIER
    assert guard.review({"x": 50.0}, "a", CONFIDENT).reason == reasons.FEATURE_OUTLIER


def test_noisy_label_fires_when_the_model_was_confidently_against_it() -> None:
    guard = warmed()
    verdict = guard.review({"x": 0.0}, "b", CONFIDENT)  # the model gave "b" 5%
    assert verdict.reason == reasons.NOISY_LABEL
    assert guard.review({"x": 0.0}, "b", {"a": 0.6, "b": 0.4}).reason is None  # unsure: learn it
    assert guard.review({"x": 0.0}, "c", {}).reason is None  # no answer given: nothing to judge


def test_noisy_regression_label_by_residual() -> None:
    guard = warmed("regression")
    assert guard.review({"x": 0.0}, 100.0, 0.0).reason == reasons.NOISY_LABEL
    assert guard.review({"x": 0.0}, 0.3, 0.0).reason is None


def test_rules_can_be_switched_off() -> None:
    guard = warmed(outliers=False, noisy_labels=False)
    assert guard.review({"x": 1e6}, "b", CONFIDENT).reason is None
    off = warmed(enabled=False)
    assert off.review({"x": 1e6}, "b", CONFIDENT).reason is None


def test_cap_releases_under_a_concept_change_and_re_engages_after() -> None:
    guard = warmed(n=3000)  # a long history of clean labels: the flagged baseline is ~0
    held = learned = 0
    for _ in range(400):  # the world changed: every label now contradicts the old model
        verdict = guard.review({"x": 0.0}, "b", CONFIDENT)
        held += verdict.reason is not None
        learned += verdict.reason is None
    assert guard.standing_down
    assert learned > 350 and held < 50  # the ratio cap releases early: the new concept is learned
    for _ in range(600):  # the model adapted: its answers agree with the labels again
        guard.review({"x": 0.0}, "b", {"a": 0.05, "b": 0.95})
    assert not guard.standing_down
    assert guard.review({"x": 0.0}, "a", {"a": 0.05, "b": 0.95}).reason == reasons.NOISY_LABEL


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_silent_on_clean_data(seed: int) -> None:
    guard = NoiseGuard(GuardSettings(warmup=50), "classification")
    rng = random.Random(seed)
    for _ in range(600):
        x = {"x": rng.gauss(0, 1), "k": rng.randint(0, 5), "flag": rng.random() < 0.5}
        p = rng.uniform(0.5, 1.0)  # the model agrees with the label, more or less surely
        assert guard.review(x, "a", {"a": p, "b": 1 - p}).reason is None


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0.02, max_value=0.2))
def test_holds_out_confident_contradictions_under_steady_noise(seed: int, noise: float) -> None:
    guard = NoiseGuard(GuardSettings(warmup=50), "classification")
    rng = random.Random(seed)
    flipped = held_flipped = 0
    for _ in range(2000):
        flip = rng.random() < noise
        verdict = guard.review({"x": rng.gauss(0, 1)}, "b" if flip else "a", CONFIDENT)
        if flip:
            flipped += 1
            held_flipped += verdict.reason == reasons.NOISY_LABEL
        else:
            assert verdict.reason is None
    assert held_flipped >= 0.8 * flipped - 60  # all but warm-up and cap transients


def duel(guard: NoiseGuard, rng: random.Random, n: int, witness_right_share: float) -> bool:
    """Feed ``n`` labels on which exactly one of model and witness is right; True if ever ahead."""
    ahead = False
    for _ in range(n):
        if rng.random() < witness_right_share:  # the witness is right, the model wrong
            guard.review({"x": 0.0}, "b", CONFIDENT, {"a": 0.3, "b": 0.7})
        else:
            guard.review({"x": 0.0}, "a", CONFIDENT, {"a": 0.3, "b": 0.7})
        ahead = ahead or guard.witness_ahead
    return ahead


def test_witness_ahead_when_it_keeps_predicting_the_labels_the_model_got_wrong() -> None:
    guard = warmed()
    rng = random.Random(7)
    assert not duel(guard, rng, 29, witness_right_share=1.0)  # the window is not full yet
    assert duel(guard, rng, 1, witness_right_share=1.0)
    guard.restart_duel_window()  # the owner adopted the witness: the score starts afresh
    assert not guard.witness_ahead
    agree = {"a": 0.9, "b": 0.1}
    for _ in range(100):  # both right or both wrong: nothing to score
        guard.review({"x": 0.0}, "a", agree, agree)
        guard.review({"x": 0.0}, "b", agree, agree)
    assert not guard.witness_ahead


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0.0, max_value=0.2))
def test_witness_stays_behind_while_the_model_wins_the_contested_labels(
    seed: int, witness_share: float
) -> None:
    guard = warmed()
    assert not duel(guard, random.Random(seed), 1000, witness_right_share=witness_share)


def test_witness_rule_needs_both_answers() -> None:
    guard = warmed()
    for _ in range(100):
        guard.review({"x": 0.0}, "b", CONFIDENT, {})  # the witness has learned nothing yet
        guard.review({"x": 0.0}, "b", {}, {"a": 0.3, "b": 0.7})  # the model gave no answer
    assert not guard.witness_ahead


def test_a_guard_stored_before_the_witness_rule_unpickles() -> None:
    guard = warmed()
    state = dict(guard.__dict__)
    del state["_duel"], state["_witness_wins"]
    old = NoiseGuard.__new__(NoiseGuard)
    old.__setstate__(state)
    assert not duel(old, random.Random(1), 10, witness_right_share=1.0)
    assert duel(old, random.Random(1), 30, witness_right_share=1.0)
