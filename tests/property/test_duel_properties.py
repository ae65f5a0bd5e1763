"""Hypothesis: the duel's score does not depend on how the contests were batched."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_app.core.duel import Duel, Rule

codes = st.lists(st.sampled_from([0, 1, 2, 3]), max_size=300)
leads = st.floats(min_value=0.55, max_value=0.95)
odds = st.floats(min_value=2.0, max_value=1e6)


@given(codes, st.integers(min_value=0, max_value=300), leads, odds)
def test_batches_score_as_one_sequence(
    sequence: list[int], cut: int, lead: float, o: float
) -> None:
    whole, split, rule = Duel(), Duel(), Rule(lead, o, 10.0, 500.0, 0.35)
    whole.score(sequence, rule)
    split.score(sequence[:cut], rule)
    split.score(sequence[cut:], rule)
    assert (whole.evidence, whole.wins, whole.contests) == (
        split.evidence,
        split.wins,
        split.contests,
    )


@given(codes, leads, odds)
def test_the_evidence_is_never_negative_and_held_once_ahead(
    sequence: list[int], lead: float, o: float
) -> None:
    duel, was_ahead, rule = Duel(), False, Rule(lead, o, 10.0, 500.0, 0.35)
    for code in sequence:
        before = duel.evidence
        duel.score([code], rule)
        assert duel.evidence >= 0.0
        if was_ahead:
            assert duel.evidence == before  # the owner sees it after the label
        was_ahead = duel.ahead(rule.odds)
