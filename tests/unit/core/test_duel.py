"""The twins' duel: a sequential test that stays quiet on coin tosses and finds a lead fast."""

from __future__ import annotations

import random
from collections import deque

from stream_app.core.duel import GUARDED_WON, UNGUARDED_WON, Duel, Rule
from stream_app.settings import GuardSettings

SETTINGS = GuardSettings()
RULE = Rule.of(SETTINGS)


def score(duel: Duel, codes: list[int]) -> None:
    duel.score(codes, RULE)


def alarms(contests: list[bool]) -> list[int]:
    """Feed contests one at a time, as the owner looks after each; return when it was ahead."""
    duel, ahead = Duel(), []
    for i, won in enumerate(contests):
        score(duel, [UNGUARDED_WON if won else GUARDED_WON])
        if duel.ahead(RULE.odds):
            ahead.append(i)
            duel.restart()
    return ahead


def window_alarms(contests: list[bool], window: int = 30, lead: float = 0.6) -> list[int]:
    """The rule the test replaced: more than ``lead`` of the last ``window`` contests won."""
    last: deque[bool] = deque(maxlen=window)
    ahead = []
    for i, won in enumerate(contests):
        last.append(won)
        if len(last) == window and sum(last) > lead * window:
            ahead.append(i)
            last.clear()
    return ahead


def test_coin_tosses_alarm_no_more_often_than_the_odds_allow_where_a_window_fired_often() -> None:
    """Page's CUSUM against the true share: on average at least ``witness_odds`` contests apart."""
    rng = random.Random(11)
    n = 20000
    allowed = n / SETTINGS.witness_odds
    for share in (0.5, 0.45, 0.35):  # a fair duel, and the guarded twin's lead under steady noise
        contests = [rng.random() < share for _ in range(n)]
        assert len(alarms(contests)) <= allowed
    tosses = [rng.random() < 0.5 for _ in range(n)]
    assert len(window_alarms(tosses)) > 5 * allowed  # the old rule, looked at after every contest


def test_a_clear_unguarded_lead_after_the_guarded_ones_is_found_within_dozens() -> None:
    rng = random.Random(12)
    steady = [rng.random() < 0.35 for _ in range(1000)]  # steady noise: the guarded twin leads
    change = [rng.random() < 0.85 for _ in range(200)]  # the held-out labels were right
    ahead = alarms(steady + change)
    assert any(len(steady) <= i < len(steady) + 40 for i in ahead)


def test_the_reference_follows_the_guarded_twins_usual_lead_but_not_past_its_bounds() -> None:
    duel = Duel()
    score(duel, [UNGUARDED_WON, GUARDED_WON] * 300)
    assert 0.49 < duel.reference(RULE) <= 0.5
    score(duel, [UNGUARDED_WON, GUARDED_WON, GUARDED_WON, GUARDED_WON] * 300)
    assert 0.35 <= duel.reference(RULE) < 0.3 + 0.06  # toward 1 in 4, but not below the floor
    assert duel.reference(RULE._replace(floor=0.0)) < 0.3
    score(duel, [GUARDED_WON] * 2000)
    assert duel.reference(RULE) == SETTINGS.witness_floor
    assert duel.reference(RULE._replace(floor=0.0, prior=0.0)) == 1.0 - RULE.lead
    score(duel, [UNGUARDED_WON] * 2000)
    duel.restart()
    assert duel.reference(RULE) == 0.5 and duel.evidence == 0.0  # never above a fair duel


def test_a_short_run_of_wins_is_no_proof_under_heavy_noise() -> None:
    """After the guarded twin won them all, 7 wins in a row against 1 - lead would beat 1000 to
    1 (the real stream behind it: the guarded twin won 73%, its contests come in runs)."""
    seven = [GUARDED_WON] * 3000 + [UNGUARDED_WON] * 7
    floorless, duel = Duel(), Duel()
    floorless.score(seven, RULE._replace(floor=0.0))
    duel.score(seven, RULE)
    assert floorless.ahead(RULE.odds) and not duel.ahead(RULE.odds)


def test_uncontested_labels_add_nothing() -> None:
    duel = Duel()
    score(duel, [0, 3] * 100)
    assert (duel.evidence, duel.wins, duel.contests) == (0.0, 0.0, 0.0)
