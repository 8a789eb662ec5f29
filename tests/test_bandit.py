"""Offer choice by a Thompson-sampling bandit: deterministic given its statistics, and
learning from clicks and conversions which offer works."""

from __future__ import annotations

import hashlib
from collections import Counter

import orjson
import pytest

from orchestrator import wire
from orchestrator.core import bandit
from orchestrator.core.decide import decide
from orchestrator.journey.catalog import Catalog
from orchestrator.journey.problems import JourneyValidationError
from orchestrator.records import Touchpoint, parse_time
from orchestrator.simulate import Simulation
from orchestrator.topics import Topics
from orchestrator.worker.process import BANDITS_KEY, Incoming, Processor

T0 = parse_time("2026-03-02T10:00:00Z")
JOURNEY = """
id: promo
name: Promo
version: 1
entry: {event: Signed Up, reentry: never}
goal: {event: Order Completed, within: 7d}
steps:
  offer:
    type: action
    channel: webhook
    template: promo
    offers: [TEN_OFF, FREESHIP, BUNDLE]
    next: wait
  wait: {type: wait, duration: 7d, next: done}
  done: {type: end}
"""
#: How likely a customer is to click each offer: FREESHIP is what works.
CLICK_RATE = {"TEN_OFF": 0.05, "FREESHIP": 0.5, "BUNDLE": 0.1}


def tp(customer: str, name: str, at: int, **kw) -> Touchpoint:
    return Touchpoint(
        event_id=f"{customer}-{name}-{at}",
        type="track",
        name=name,
        channel="web",
        occurred_at=at,
        customer_id=customer,
        **kw,
    )


def clicks(action_id: str, offer: str) -> bool:
    """A fixed coin per action: the population behaves the same in every run."""
    roll = int.from_bytes(hashlib.sha256(action_id.encode()).digest()[:4], "big") / 2**32
    return roll < CLICK_RATE[offer]


def test_the_choice_is_a_function_of_the_statistics_and_the_seed():
    arms = {o: bandit.arm("j", "s", "", o) for o in ("A", "B")}
    stats = {arms["A"]: (40, 2), arms["B"]: (40, 30)}
    picks = {bandit.choose(["A", "B"], arms, stats, seed=f"a{i}") for i in range(20)}
    assert picks == {"B"}  # 75 % against 5 %: B every time
    once = [bandit.choose(["A", "B"], arms, {}, seed="same") for _ in range(5)]
    assert len(set(once)) == 1  # no hidden randomness


def test_the_bandit_learns_which_offer_gets_clicked():
    sim = Simulation(Catalog.from_yaml(JOURNEY))
    chosen: list[str] = []
    for n in range(1500):
        customer = f"c{n:04d}"
        at = T0 + n * 60_000
        (action,) = sim.feed(tp(customer, "Signed Up", at)).actions
        assert action.offer in CLICK_RATE and "by bandit" in action.reason
        chosen.append(action.offer or "")
        if clicks(action.action_id, action.offer or ""):
            sim.feed(tp(customer, "Email Link Clicked", at + 1, action_id=action.action_id))
    late = Counter(chosen[-500:])
    assert late["FREESHIP"] > 0.8 * 500, late
    pulls = {key.rsplit(bandit.SEP, 1)[1]: v for key, v in sim.bandits.items()}
    assert sum(p for p, _ in pulls.values()) == 1500
    assert pulls["FREESHIP"][1] > pulls["TEN_OFF"][1]


def test_a_conversion_rewards_the_offer_once_and_a_click_after_it_does_not_again():
    catalog = Catalog.from_yaml(JOURNEY)
    stats: dict[str, tuple[int, int]] = {}
    d = decide(None, tp("c1", "Signed Up", T0), catalog, customer_id="c1", bandits=stats)
    bandit.learn(stats, d.bandit_pulls, d.bandit_wins)
    (action,) = d.actions
    converted = decide(d.state, tp("c1", "Order Completed", T0 + 5), catalog, customer_id="c1")
    assert converted.bandit_wins == d.bandit_pulls
    click = tp("c1", "Email Link Clicked", T0 + 6, action_id=action.action_id)
    assert decide(converted.state, click, catalog, customer_id="c1").bandit_wins == ()


def test_a_worker_partition_keeps_its_statistics_next_to_its_state():
    from test_worker_process import MemoryBackend

    topics = Topics("unit")
    processor = Processor(Catalog.from_yaml(JOURNEY), topics)
    backend = MemoryBackend()
    signups = [tp(f"c{i}", "Signed Up", T0 + i) for i in range(30)]
    records = [
        Incoming(topics.touchpoints, 0, i, None, wire.encode_touchpoint(t))
        for i, t in enumerate(signups)
    ]
    processor.process(records, backend, now=T0 + 100)
    stats = orjson.loads(backend.states[BANDITS_KEY])
    assert sum(pulls for pulls, _ in stats.values()) == 30
    assert {key.rsplit(bandit.SEP, 1)[1] for key in stats} <= set(CLICK_RATE)


def test_offer_and_offers_together_are_refused():
    bad = JOURNEY.replace("offers: [TEN_OFF, FREESHIP, BUNDLE]", "offer: X\n    offers: [A, B]")
    with pytest.raises(JourneyValidationError, match="give `offer` or `offers`, not both"):
        Catalog.from_yaml(bad)
