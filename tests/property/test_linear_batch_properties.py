"""Hypothesis: a batch answered with NumPy is predict_one's, to the bit, or left to River."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.predict import LINEAR_MIN_ROWS, fresh_model, predict_many, predict_one
from stream_app.settings import ModelSettings

NAMES = tuple("abcdfghijklm")  # (enough for BLAS to add in another order than River)
numbers = (
    st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
)
rows = st.lists(st.fixed_dictionaries({name: numbers for name in NAMES}), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    factory=st.sampled_from(["logistic_regression", "linear_regression"]),
    learned=rows,
    labels=st.lists(st.booleans(), min_size=40, max_size=40),
    batch=st.lists(
        st.fixed_dictionaries({name: numbers for name in NAMES}),
        min_size=LINEAR_MIN_ROWS,
        max_size=60,
    ),
    extra=st.sampled_from([None, "string", "new name", "reordered"]),
)
def test_a_batch_is_answered_as_event_by_event(
    factory: str,
    learned: list[dict[str, Any]],
    labels: list[bool],
    batch: list[dict[str, Any]],
    extra: str | None,
) -> None:
    model = fresh_model(ModelSettings(factory=f"stream_app.models:{factory}"))
    for x, label in zip(learned, labels, strict=False):
        y: Any = label if model.task == "classification" else float(label) * 3.0
        model.estimator.learn_one(x, model.labels.to_model(y))
        model.examples_learned += 1
    if extra == "string":
        batch = [*batch, {**batch[0], "b": "red"}]
    elif extra == "new name":
        batch = [*batch, {**batch[0], "e": 1.0}]
    elif extra == "reordered":
        batch = [*batch, dict(reversed(batch[0].items()))]
    many = predict_many(model, batch, min_rows=10**9)
    one = [predict_one(model, x) for x in batch]
    assert many == one
    assert [type(p) for a in many for p in a.proba.values()] == [
        type(p) for a in one for p in a.proba.values()
    ]
