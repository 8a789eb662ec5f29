"""Offer choice by a Thompson-sampling bandit: an action step listing ``offers`` sends
the one whose sampled success rate is highest, and learns from what happens next.

Each arm (journey, step, segment, offer) keeps ``[pulls, wins]``: a pull when an
action with that offer is emitted, a win when the customer engages with that action (a
customer-initiated event carrying its ``action_id``: an open, a click) or converts in
its journey - at most one win per action. The sample for an arm is drawn from
Beta(1 + wins, 1 + pulls - wins) with a generator seeded by the action id, so the
choice is deterministic given the statistics, as the core must be.

The statistics are shared by the customers of one partition (a worker keeps them next
to the partition's state), so every partition learns on its own share of the traffic;
``rota simulate`` keeps one set for all customers.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping

#: Arm key -> [pulls, wins].
Stats = Mapping[str, tuple[int, int]]

SEP = "\x1f"


def arm(journey: str, step: str, segment: str, offer: str) -> str:
    return SEP.join((journey, step, segment, offer))


def choose(offers: Iterable[str], arms: Mapping[str, str], stats: Stats, seed: str) -> str:
    """The offer with the highest Thompson sample; ``arms`` maps offer -> arm key."""
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    best, best_sample = "", -1.0
    for offer in offers:
        pulls, wins = stats.get(arms[offer], (0, 0))
        sample = rng.betavariate(1 + wins, 1 + max(0, pulls - wins))
        if sample > best_sample:
            best, best_sample = offer, sample
    return best


def learn(stats: dict[str, tuple[int, int]], pulls: Iterable[str], wins: Iterable[str]) -> bool:
    """Count ``pulls`` and ``wins`` into ``stats``; whether anything changed."""
    changed = False
    for key in pulls:
        p, w = stats.get(key, (0, 0))
        stats[key] = (p + 1, w)
        changed = True
    for key in wins:
        p, w = stats.get(key, (0, 0))
        stats[key] = (p, min(p, w + 1))
        changed = True
    return changed
