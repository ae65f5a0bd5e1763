"""ScaleNumbers standardises exactly as River's StandardScaler behind it did, on random streams.

:class:`Before` is the step as it was when it wrapped River's ``StandardScaler`` (kept here as the
oracle). Both see the same seeded streams, with strings, booleans, integers, names beyond the
bound and names that come and go; every transform and the final statistics must agree (to 1e-12;
in practice bit for bit, as both do the same floating-point operations in the same order).
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Hashable
from typing import Any

import pytest
from river import base, preprocessing

from stream_app.models import logistic_regression
from stream_app.scaling import ScaleNumbers

TOLERANCE = 1e-12


class Before(base.Transformer):
    """ScaleNumbers as it was: River's StandardScaler on the admitted numbers."""

    def __init__(self, max_names: int) -> None:
        self.max_names = max_names
        self.scaler: Any = preprocessing.StandardScaler()

    def _numbers(self, x: dict[Hashable, Any]) -> dict[Hashable, Any] | None:
        counts = self.scaler.counts
        for name, value in x.items():
            if value.__class__ is str or name not in counts:
                break
        else:
            return None
        room = self.max_names - len(counts)
        numbers: dict[Hashable, Any] = {}
        for name, value in x.items():
            if value.__class__ is str:
                continue
            if name in counts:
                numbers[name] = value
            elif room > 0:
                numbers[name] = value
                room -= 1
        return numbers

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        numbers = self._numbers(x)
        self.scaler.learn_one(x if numbers is None else numbers)

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        numbers = self._numbers(x)
        if numbers is None:
            return self.scaler.transform_one(x)  # type: ignore[no-any-return]
        counts = self.scaler.counts
        scaled = self.scaler.transform_one({k: v for k, v in numbers.items() if k in counts})
        out: dict[Hashable, Any] = {}
        for name, value in x.items():
            if name in scaled:
                out[name] = scaled[name]
            elif name in numbers:
                out[name] = 0.0
            else:
                out[name] = value
        return out


def row(rng: random.Random, names: int) -> dict[Hashable, Any]:
    """A random row: some of ``names`` numeric names, maybe strings, a boolean, an int."""
    x: dict[Hashable, Any] = {}
    for k in rng.sample(range(names), rng.randint(1, names)):
        x[f"n{k}"] = rng.gauss(k, 1.0 + k) * (10.0 ** rng.randint(-3, 3))
    if rng.random() < 0.3:
        x["colour"] = rng.choice(["red", "blue"])
    if rng.random() < 0.3:
        x["flag"] = rng.random() < 0.5
    if rng.random() < 0.2:
        x["count"] = rng.randint(-5, 5)
    if rng.random() < 0.1:
        x["constant"] = 1.0
    if rng.random() < 0.05:  # a string under a name that is scaled as a number elsewhere
        x[f"n{rng.randrange(names)}"] = "text"
    return x


def close(a: dict[Hashable, Any], b: dict[Hashable, Any]) -> bool:
    if list(a) != list(b):
        return False
    for k, va in a.items():
        vb = b[k]
        if isinstance(va, float) or isinstance(vb, float):
            if not math.isclose(va, vb, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
                return False
        elif va != vb or type(va) is not type(vb):
            return False
    return True


@pytest.mark.parametrize(("seed", "max_names", "names"), [(1, 64, 8), (2, 5, 12), (3, 1, 4)])
def test_scale_numbers_matches_the_standard_scaler_it_replaced(
    seed: int, max_names: int, names: int
) -> None:
    rng = random.Random(seed)
    new, old = ScaleNumbers(max_names), Before(max_names)
    for i in range(3000):
        x = row(rng, names)
        assert close(new.transform_one(x), old.transform_one(x)), f"before learning row {i}"
        new.learn_one(x)
        old.learn_one(x)
        assert close(new.transform_one(x), old.transform_one(x)), f"after learning row {i}"
    every: dict[Hashable, Any] = {f"n{k}": 1.5 for k in range(names)}
    assert close(new.transform_one(every), old.transform_one(every))


def test_a_pickled_step_scales_as_the_original() -> None:
    rng = random.Random(4)
    step = ScaleNumbers(6)
    for _ in range(200):
        step.learn_one(row(rng, 8))
    copy = pickle.loads(pickle.dumps(step))
    for _ in range(50):
        x = row(rng, 8)
        assert copy.transform_one(x) == step.transform_one(x)
        copy.learn_one(x)
        step.learn_one(x)


def test_learn_one_hands_its_answer_only_to_the_very_same_example() -> None:
    step = ScaleNumbers()
    for value in (1.0, 2.0, 4.0):
        step.learn_one({"x": value})
    x = {"x": 8.0}
    step.learn_one(x)
    other = {"x": 8.0 - 1.0}
    assert step.transform_one(other) == step.transform_one(dict(other))  # computed, not handed
    assert step.transform_one(x) == step.transform_one(dict(x))
    step.learn_one(x)
    assert pickle.loads(pickle.dumps(step))._learned is None  # (a transient: never stored)
    assert step.transform_one(x) == pickle.loads(pickle.dumps(step)).transform_one(x)


def test_the_shipped_pipeline_predicts_as_one_with_the_former_step() -> None:
    rng = random.Random(5)
    model = logistic_regression()
    oracle = logistic_regression()
    oracle.steps["ScaleNumbers"] = Before(2**16)
    for _ in range(1000):
        x = row(rng, 6)
        y = rng.random() < 0.5
        p, q = model.predict_proba_one(x), oracle.predict_proba_one(x)
        assert p.keys() == q.keys()
        assert all(math.isclose(p[c], q[c], abs_tol=TOLERANCE) for c in p)
        model.learn_one(x, y)
        oracle.learn_one(x, y)


def test_batch_learning_and_scaling_match_the_standard_scaler() -> None:
    import pandas as pd

    rng = random.Random(6)
    new, old = ScaleNumbers(), Before(2**16)
    for _ in range(30):
        x = {f"n{k}": rng.gauss(k, 2.0) for k in range(4)}
        new.learn_one(x)
        old.learn_one(x)
    for _ in range(5):
        frame = pd.DataFrame([{f"n{k}": rng.gauss(k, 2.0) for k in range(5)} for _ in range(40)])
        new.learn_many(frame)
        old.scaler.learn_many(frame)
        assert new.transform_many(frame).equals(old.scaler.transform_many(frame))
        x = {f"n{k}": rng.gauss(k, 2.0) for k in range(5)}
        assert close(new.transform_one(x), old.transform_one(x))
