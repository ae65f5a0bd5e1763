"""The twins' duel as a sequential test of whether the labels the noise guard held out were right.

The guard's twins (:mod:`stream_app.core.twins`) are *contested* on a label when exactly one of
them predicted it. Where the held-out labels were noise, the guarded twin wins more of those; on a
steady stream without noise worth holding out, they are coin tosses; after a change hidden in the
noise, the unguarded twin wins most of them. The score is Page's one-sided CUSUM over the
contests: each adds the log-likelihood ratio of "the unguarded twin wins ``witness_lead`` of
them" against the *reference*, the share it has won so far, and the sum is reset at 0 whenever
it would go below. The held-out labels were right once it reaches ``log(witness_odds)``.

The reference is the stream's own long-run win share, forgotten over ``witness_horizon``
contests and drawn toward a fair 0.5 by ``witness_window`` contests' worth of prior, so that a
few early contests cannot set it. It is never above 0.5 (the unguarded twin's lead is what is
tested) nor below ``witness_floor`` or ``1 - witness_lead`` (below the latter, a rise to a share
under 0.5, still the guarded twin's lead, would add evidence; the floor keeps a few wins from
being strong evidence: contests come in runs, a batch's from the same weights). Under steady
noise it settles near the guarded twin's lead, which makes a change's wins stronger evidence: a
change is found after fewer contests than against 0.5, at the same false-alarm odds.

On a steady stream the score keeps returning to 0, and a false alarm needs a run of evidence as
unlikely as ``witness_odds`` says, however often the score is looked at: the sliding window it
replaced (the unguarded twin won more than 0.6 of the last 30 contests, looked at after each)
fired by chance about once in 150 contests of coin tosses.

>>> rule = Rule(lead=0.85, odds=1000.0, prior=10.0, horizon=500.0, floor=0.35)
>>> duel = Duel()
>>> duel.score([1, 2] * 200, rule)  # coin tosses
>>> duel.evidence < 1.0, round(duel.reference(rule), 2)
(True, 0.5)
>>> duel.score([1] * 13, rule)  # a run of wins...
>>> duel.ahead(rule.odds)
False
>>> duel.score([1], rule)  # ...14 against 0.5 beat 1000 to 1
>>> duel.ahead(rule.odds)
True
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from stream_app.settings import GuardSettings

__all__ = ["GUARDED_WON", "UNGUARDED_WON", "Duel", "Rule", "evidence_of", "reference_share"]

UNGUARDED_WON = 1
"""A contested label only the unguarded twin predicted (the twins' code for it)."""
GUARDED_WON = 2
"""A contested label only the guarded twin predicted. Other codes (0, 3) are not contested."""
FAIR = 0.5
"""The share of a duel between equals."""


class Rule(NamedTuple):
    """The test's settings (``guard.witness_*``): see the module's docstring."""

    lead: float
    """The unguarded twin's win share looked for (``witness_lead``)."""
    odds: float
    """Likelihood ratio at which it leads (``witness_odds``)."""
    prior: float
    """Contests' worth of a fair duel the reference starts from (``witness_window``)."""
    horizon: float
    """Contests the reference forgets over (``witness_horizon``)."""
    floor: float
    """The lowest reference (``witness_floor``; never below ``1 - lead`` either)."""

    @classmethod
    def of(cls, settings: GuardSettings) -> Rule:
        """Return the rule the guard's settings give."""
        s = settings
        return cls(
            s.witness_lead, s.witness_odds, s.witness_window, s.witness_horizon, s.witness_floor
        )


def evidence_of(won: bool, lead: float, reference: float) -> float:
    """Return the log-likelihood ratio of one contest: win share ``lead`` against ``reference``.

    >>> round(evidence_of(True, 0.8, 0.5), 4), round(evidence_of(False, 0.8, 0.5), 4)
    (0.47, -0.9163)
    >>> round(evidence_of(True, 0.8, 0.35), 4)  # against a guarded twin's lead: stronger
    0.8267
    """
    if won:
        return math.log(lead / reference)
    return math.log((1.0 - lead) / (1.0 - reference))


def reference_share(wins: float, contests: float, rule: Rule) -> float:
    """Return the win share a contest is tested against (see the module's docstring).

    >>> rule = Rule(lead=0.8, odds=1000.0, prior=20.0, horizon=500.0, floor=0.0)
    >>> round(reference_share(35.0, 100.0, rule), 4)  # 35 won of 100, drawn toward 0.5 by 20
    0.375
    >>> reference_share(35.0, 100.0, rule._replace(prior=0))
    0.35
    >>> reference_share(5.0, 100.0, rule._replace(prior=0))  # not below 1 - lead
    0.19999999999999996
    >>> reference_share(5.0, 100.0, rule._replace(prior=0, floor=0.35))  # nor below the floor
    0.35
    >>> reference_share(0.0, 0.0, rule._replace(prior=0))  # no contest yet: a fair duel
    0.5
    """
    prior = rule.prior
    share = (wins + FAIR * prior) / (contests + prior) if contests + prior > 0.0 else FAIR
    return min(FAIR, max(1.0 - rule.lead, rule.floor, share))


class Duel:
    """The score of the twins' duel: the test's evidence and the long-run win share.

    Pickled with the guard (three floats).
    """

    def __init__(self) -> None:
        self.evidence = 0.0
        """Page's CUSUM: log-likelihood ratio that the unguarded twin leads, reset at 0."""
        self.wins = 0.0
        """Contests the unguarded twin won, forgotten over ``witness_horizon`` contests."""
        self.contests = 0.0
        """Contests, forgotten alike."""

    def reference(self, rule: Rule) -> float:
        """Return the win share the next contest is tested against (:func:`reference_share`)."""
        return reference_share(self.wins, self.contests, rule)

    def ahead(self, odds: float) -> bool:
        """Tell whether the evidence that the unguarded twin leads reached ``log(odds)``.

        Asked after every label: no evidence, no logarithm.
        """
        return self.evidence > 0.0 and self.evidence >= math.log(odds)

    def score(self, who_was_right: list[int], rule: Rule) -> None:
        """Add the contests of a batch, in order; the evidence stays once it reached the odds.

        ``who_was_right``: per label, :data:`UNGUARDED_WON`, :data:`GUARDED_WON`, or another
        code (not contested). Held at the threshold, the evidence is seen by the owner after
        the label even though a batch is scored at once; the long-run share still learns.
        """
        limit = math.log(rule.odds)
        keep = 1.0 - 1.0 / rule.horizon
        lead = rule.lead
        evidence, wins, contests = self.evidence, self.wins, self.contests
        for right in who_was_right:
            if right != UNGUARDED_WON and right != GUARDED_WON:
                continue
            won = right == UNGUARDED_WON
            if evidence < limit:
                evidence += evidence_of(won, lead, reference_share(wins, contests, rule))
                if evidence < 0.0:
                    evidence = 0.0
            wins = wins * keep + won
            contests = contests * keep + 1.0
        self.evidence, self.wins, self.contests = evidence, wins, contests

    def restart(self) -> None:
        """Forget the evidence (the owner took the witness's state); keep the long-run share."""
        self.evidence = 0.0
