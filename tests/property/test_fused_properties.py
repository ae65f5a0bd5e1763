"""Hypothesis: the fused path answers and learns as River's own pipeline does, to the bit.

Two copies of a model see the same events: one through :mod:`stream_app.core.fused`, one through
River's ``Pipeline`` methods. Every answer is compared by its pickle (the bits: -0.0 is not 0.0,
and a NaN equals itself), and so is the whole model at the end (every step's state, the
pipeline's plan).
"""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from river import compose, linear_model

from stream_app.core import fused
from stream_app.models import BoundedOneHot, gaussian_nb, hoeffding_tree
from stream_app.scaling import ScaleNumbers

NAMES = tuple("abcdefgh")
numbers = (
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.booleans()
)
strings = st.sampled_from(["red", "blue", "green", "a=b"])
events = st.dictionaries(st.sampled_from(NAMES), numbers | strings, max_size=len(NAMES))
"""Any name, any value: a name may be a number in one event and a string in the next."""
typed_events = st.fixed_dictionaries(
    {}, optional={name: strings if name in "gh" else numbers for name in NAMES}
)
"""Each name always of one kind (a tree cannot compare a string with a number)."""
OPS = ("learn", "predict", "both")


def streams(of: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[Any]]:
    """Events, each with a label, what to do with it (learn, predict, both), reordered or not."""
    return st.lists(st.tuples(of, st.booleans(), st.sampled_from(OPS), st.booleans()), max_size=60)


steps = streams(events)
bounds = st.integers(min_value=1, max_value=len(NAMES) + 2)


def same(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` pickle to the same bytes: the same bits, the same state."""
    return pickle.dumps(a) == pickle.dumps(b)


def build(final: str, max_names: int, max_indicators: int) -> Any:
    """A shipped linear pipeline with these bounds (exact types, as the factories build it)."""
    last = linear_model.LogisticRegression() if final == "lr" else linear_model.LinearRegression()
    return ScaleNumbers(max_names) | BoundedOneHot(max_indicators) | last


def replay(
    ours: Any, river: Any, stream: list[tuple[dict[str, Any], bool, str, bool]], state: bool = True
) -> None:
    """Feed ``stream`` to ``ours`` through the fused path and to ``river`` through River.

    Then compare the two models' whole state, if ``state`` (a tree's pickle is not reproducible).
    """
    classifier = isinstance(river, compose.Pipeline) and isinstance(
        river._last_step, linear_model.LogisticRegression
    )
    for x, label, op, reverse in stream:
        event = dict(reversed(x.items())) if reverse else x  # the same names, reordered
        if op != "learn":
            assert same(fused.predict_one(ours, event), river.predict_one(event))
            if classifier:
                assert same(fused.predict_proba_one(ours, event), river.predict_proba_one(event))
        if op != "predict":
            y = label if classifier else float(label) * 3.0 - 1.0
            fused.learn_one(ours, event, y)
            river.learn_one(event, y)
    assert not state or same(ours, river)


@settings(max_examples=150, deadline=None)
@given(
    final=st.sampled_from(["lr", "linear"]),
    max_names=bounds,
    max_indicators=bounds,
    stream=steps,
)
def test_the_fused_path_is_rivers_pipeline(
    final: str, max_names: int, max_indicators: int, stream: list[Any]
) -> None:
    replay(build(final, max_names, max_indicators), build(final, max_names, max_indicators), stream)


@settings(max_examples=40, deadline=None)
@given(final=st.sampled_from(["lr", "linear"]), bound=bounds, stream=steps)
def test_learning_during_predict_is_left_to_river(
    final: str, bound: int, stream: list[Any]
) -> None:
    with compose.learn_during_predict():
        replay(build(final, bound, bound), build(final, bound, bound), stream)


@settings(max_examples=20, deadline=None)
@given(factory=st.sampled_from([hoeffding_tree, gaussian_nb]), stream=streams(typed_events))
def test_other_estimators_are_left_to_river(factory: Any, stream: list[Any]) -> None:
    replay(factory(), factory(), stream, state=False)
