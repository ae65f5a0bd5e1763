"""Issue 21: a model's inputs stay bounded whatever the strings and feature names.

The shipped linear factories put :class:`BoundedOneHot` first. Below its bound it changes nothing
(numeric streams are served exactly as River's own pipeline without it); beyond, new inputs share
hash buckets, deterministically in every process, through pickling and batch calls.
"""

from __future__ import annotations

import logging
import pickle
import random
import subprocess
import sys

import orjson
import pandas as pd
import pytest
from river import compose, linear_model, preprocessing

from stream_app.core.decode import decode_event
from stream_app.core.example import LabeledExample
from stream_app.core.learn import Learner
from stream_app.core.model_size import WARN_SHARE, SizeWatch, model_inputs
from stream_app.core.predict import NO_ANSWER, fresh_model, predict_one
from stream_app.errors import ConfigError, ModelError
from stream_app.models import (
    DEFAULT_MAX_INDICATORS,
    BoundedOneHot,
    bucket_of,
    input_bound,
    logistic_regression,
    set_max_indicators,
    tracked_inputs,
)
from stream_app.settings import LimitSettings, ModelSettings, Settings, load_settings

BOUND = 64


def numeric(n: int, seed: int = 3) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {f"x{k}": rng.gauss(0, 1) for k in range(5)}
        out.append((x, x["x0"] - x["x1"] + rng.gauss(0, 0.3) > 0))
    return out


def unique(n: int, new_names: int = 1, seed: int = 5) -> list[tuple[dict[str, object], bool]]:
    """Each event: a new string value and ``new_names`` new feature names (the soak's shape)."""
    rng = random.Random(seed)
    out: list[tuple[dict[str, object], bool]] = []
    for i in range(n):
        x: dict[str, object] = {"a": rng.gauss(0, 1), "user": f"u-{i}"}
        x.update({f"n{i}-{k}": 1.0 for k in range(new_names)})
        out.append((x, float(x["a"]) > 0))  # type: ignore[arg-type]
    return out


def bounded_lr(bound: int = BOUND) -> object:
    return set_max_indicators(logistic_regression(), bound)


def test_numeric_streams_are_served_exactly_as_rivers_pipeline_without_the_step() -> None:
    ours = logistic_regression()
    river = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in numeric(2000):
        assert ours.predict_proba_one(x) == river.predict_proba_one(x)
        ours.learn_one(x, y)
        river.learn_one(x, y)


def test_below_the_bound_strings_are_one_hot_beside_scaled_numbers_as_rivers_union() -> None:
    """River's own composition: numbers selected and scaled, strings selected and one-hot."""
    rng = random.Random(9)
    ours = logistic_regression()
    names = [f"x{k}" for k in range(5)]
    river = (
        (compose.Select(*names) | preprocessing.StandardScaler())
        + (compose.Select("color") | preprocessing.OneHotEncoder())
    ) | linear_model.LogisticRegression()
    for x, y in numeric(2000):
        x_s: dict[str, object] = {**x, "color": rng.choice(["red", "green", "blue"])}
        mine, theirs = ours.predict_proba_one(x_s), river.predict_proba_one(x_s)
        assert all(abs(mine[k] - theirs[k]) <= 1e-9 for k in (False, True))
        ours.learn_one(x_s, y)
        river.learn_one(x_s, y)


def test_a_string_that_decides_the_label_is_learned() -> None:
    """The scaler before the one-hot step: an indicator is not standardised into 0.0."""
    rng = random.Random(11)
    model = logistic_regression()
    hits = 0
    for i in range(2000):
        color = rng.choice(["red", "blue"])
        x = {"noise": rng.gauss(0, 1), "color": color}
        hits += i >= 1000 and model.predict_one(x) == (color == "red")
        model.learn_one(x, color == "red")
    assert hits / 1000 > 0.95


def test_a_new_string_value_per_event_cannot_grow_the_model_past_its_bound() -> None:
    model = bounded_lr()
    step = model["BoundedOneHot"]  # type: ignore[index]
    for x, y in unique(3000):
        model.learn_one(x, y)  # type: ignore[attr-defined]
        assert tracked_inputs(model) is not None
        assert tracked_inputs(model) <= input_bound(model) == 2 * BOUND  # type: ignore[operator]
    weights = model["LogisticRegression"].weights  # type: ignore[index]
    assert len(weights) == tracked_inputs(model) == 2 * BOUND  # every bucket taken by now
    assert model["ScaleNumbers"].names <= BOUND  # type: ignore[index]
    assert len(step._known) == BOUND and "a" in step._known  # known numbers stay exact
    assert step.transform_one({"a": 1.5, "user": "u-2999"})["a"] == 1.5


def test_an_event_with_1000_new_feature_names_is_accepted_and_stays_within_the_bound() -> None:
    settings = Settings().replace(
        guard={"enabled": False}, model={"max_indicators": BOUND}, limits={"max_features": 1000}
    )
    learner = Learner(settings)
    for i, (x, y) in enumerate(numeric(20)):
        learner.learn(LabeledExample(f"e-{i}", x, y, NO_ANSWER, None, 0.0))
    wide = {f"churn-{k}": float(k) for k in range(1000)}
    raw = orjson.dumps({"id": "wide", "features": wide})
    event = decode_event(raw, settings.limits)  # within limits.max_features: accepted
    assert len(event.features) == 1000
    served = predict_one(learner.serving.model, event.features)
    outcome = learner.learn(LabeledExample("wide", event.features, True, served, None, 0.0))
    assert outcome.learned
    model = learner.serving.model
    assert model_inputs(model) == (tracked_inputs(model.estimator), 2 * BOUND)
    assert BOUND < model_inputs(model)[0] <= 2 * BOUND
    assert len(model.estimator["LogisticRegression"].weights) <= 2 * BOUND
    assert len(model.feature_names) == BOUND  # the names kept for artifacts are bounded too
    assert predict_one(model, event.features).prediction is not None


def test_limits_max_features_still_rejects_more() -> None:
    from stream_app.errors import RejectedMessage

    wide = {f"churn-{k}": 1.0 for k in range(1001)}
    with pytest.raises(RejectedMessage):
        decode_event(orjson.dumps({"id": "w", "features": wide}), LimitSettings(max_features=1000))


def test_pickled_models_predict_and_keep_learning_identically() -> None:
    model = bounded_lr()
    data = unique(600)
    for x, y in data[:400]:
        model.learn_one(x, y)  # type: ignore[attr-defined]
    restored = pickle.loads(pickle.dumps(model))
    for x, y in data[400:]:
        assert restored.predict_proba_one(x) == model.predict_proba_one(x)  # type: ignore[attr-defined]
        restored.learn_one(x, y)
        model.learn_one(x, y)  # type: ignore[attr-defined]
    assert tracked_inputs(restored) == tracked_inputs(model)


def test_buckets_are_the_same_in_processes_with_different_string_hash_seeds() -> None:
    names = ["user=u-1", "user=u-2", "x", "churn-7"]
    here = [bucket_of(n, 1024) for n in names]
    code = f"from stream_app.models import bucket_of as b; print([b(n, 1024) for n in {names!r}])"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == str(here)


def test_a_batch_is_transformed_as_its_events_are() -> None:
    step = BoundedOneHot(max_indicators=3)
    step.learn_one({"a": 1.0, "b": 2.0, "c": 3.0})
    frame = pd.DataFrame({"a": [1.0, 2.0], "d": [4.0, 5.0], "e": [6.0, 7.0]})
    many = step.transform_many(frame)
    for i, row in enumerate(frame.to_dict("records")):
        one = step.transform_one(row)
        assert set(one) == set(many.columns)
        assert all(many.iloc[i][k] == v for k, v in one.items())
    known = pd.DataFrame({"a": [1.0], "b": [2.0]})
    assert step.transform_many(known) is known  # known columns: no copy


def test_the_bound_comes_from_settings_and_is_checked() -> None:
    assert ModelSettings().max_indicators == DEFAULT_MAX_INDICATORS == 2**16
    model = fresh_model(ModelSettings(max_indicators=8))
    assert input_bound(model.estimator) == 16 and model.max_names == 8
    with pytest.raises(ConfigError, match="max_indicators"):
        load_settings(env={"STREAM_APP_MODEL__MAX_INDICATORS": "0"}, files=[])
    with pytest.raises(ModelError, match="positive"):
        BoundedOneHot(max_indicators=0)


def test_a_trained_step_keeps_its_bound() -> None:
    model = bounded_lr()
    model.learn_one({"x": 1.0}, True)  # type: ignore[attr-defined]
    with pytest.raises(ModelError, match="trained"):
        set_max_indicators(model, 2 * BOUND)


def test_the_worker_warns_once_past_a_share_of_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    model = fresh_model(ModelSettings(max_indicators=BOUND))
    watch = SizeWatch()
    seen = []
    with caplog.at_level(logging.WARNING, logger="stream_app.core.model_size"):
        for x, y in unique(400):
            model.estimator.learn_one(x, y)
            seen.append(watch.observe(model))
    warnings = [r for r in caplog.records if "model.max_indicators" in r.getMessage()]
    assert len(warnings) == 1
    assert max(seen) > WARN_SHARE * 2 * BOUND
    first_past = next(i for i, n in enumerate(seen) if n > WARN_SHARE * 2 * BOUND)
    assert str(seen[first_past]) in warnings[0].getMessage()


def test_a_model_without_a_bounded_step_counts_the_names_it_learned() -> None:
    model = fresh_model(ModelSettings(factory="stream_app.models:hoeffding_tree"))
    model.note_names({"a": 1.0, "b": 2.0})
    assert model_inputs(model) == (2, DEFAULT_MAX_INDICATORS)


def test_the_guard_watches_at_most_max_indicators_feature_names() -> None:
    learner = Learner(Settings().replace(model={"max_indicators": BOUND}))
    for i in range(20):
        churn = {f"churn-{i}-{k}": float(k) for k in range(100)}
        learner.learn(
            LabeledExample(f"e-{i}", {"x": float(i), **churn}, i % 2 == 0, NO_ANSWER, None, 0.0)
        )
    guard = learner.serving.guard
    assert guard.learned == 20 and len(guard._slot) == BOUND
    assert "x" in guard._slot  # names seen first are still watched
