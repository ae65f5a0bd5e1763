"""Metrics: a batch observed at once reads exactly as the same amounts observed one by one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_app.core.metrics import LATENCY_BUCKETS, METRICS, Metrics, observe_many

AMOUNTS = st.lists(
    st.one_of(
        st.sampled_from(LATENCY_BUCKETS),  # on a bound: counted in that bound's bucket
        st.floats(min_value=0.0, max_value=10.0, allow_nan=False),
    ),
    max_size=50,
)


@given(AMOUNTS)
def test_observe_many_equals_observe_one_by_one(amounts: list[float]) -> None:
    one_by_one, batched = Metrics(), Metrics()
    for amount in amounts:
        one_by_one.predict_latency.observe(amount)
    observe_many(batched.predict_latency, amounts)
    got, want = samples(batched), samples(one_by_one)
    assert want and got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def samples(metrics: Metrics) -> dict[str, float]:
    """The latency histogram's buckets, count and sum (not its creation time)."""
    family = metrics.predict_latency.collect()[0]
    return {
        s.name + str(s.labels): s.value for s in family.samples if not s.name.endswith("_created")
    }


def test_every_metric_of_the_table_is_a_typed_attribute_of_its_kind() -> None:
    metrics = Metrics()
    assert set(Metrics.__annotations__) == set(METRICS)
    for attribute, metric in METRICS.items():
        assert isinstance(getattr(metrics, attribute), metric.kind), attribute
