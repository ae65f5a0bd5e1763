"""Hypothesis: RecentIds forgets exactly what its rule says, whatever the order of the clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.join import RecentIds


def reference(adds: list[tuple[str, float]], ttl_s: float, max_items: int) -> list[str]:
    """The rule, spelled out: after each add, drop the oldest while too many or too old."""
    kept: list[tuple[str, float]] = []
    for event_id, now in adds:
        kept = [(i, t) for i, t in kept if i != event_id] + [(event_id, now)]
        while kept and (len(kept) > max_items or kept[0][1] < now - ttl_s):
            kept.pop(0)
    return [i for i, _ in kept]


steps = st.lists(
    st.tuples(st.integers(0, 20).map(str), st.sampled_from([0.0, 0.5, 1.0, 4.0, -3.0])),
    max_size=120,
)


@settings(max_examples=400, deadline=None)
@given(steps, st.sampled_from([1.0, 5.0, 30.0]), st.integers(1, 12))
def test_it_keeps_what_the_rule_keeps(
    moves: list[tuple[str, float]], ttl_s: float, max_items: int
) -> None:
    ids, now, adds = RecentIds(ttl_s, max_items), 100.0, []
    for event_id, step in moves:
        now += step  # (a clock that may step back: replayed examples keep their own time)
        adds.append((event_id, now))
        ids.add(event_id, now)
        assert list(ids._seen) == reference(adds, ttl_s, max_items)
