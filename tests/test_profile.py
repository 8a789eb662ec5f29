"""Folding touchpoints into the profile: what the counts, times and engagement say after a
stream, recomputed here from the stream itself, and the profile given in left as it was
(``fold`` copies what it changes)."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.profile import ENGAGEMENT_HALF_LIFE, ENGAGEMENT_TYPES, fold
from orchestrator.core.state import Profile
from orchestrator.records import Touchpoint

T0 = 1_772_438_400_000
DAY = 86_400_000

#: Out-of-order and repeated times included: a late event must not move a time back.
touchpoints = st.builds(
    Touchpoint,
    event_id=st.just("e"),
    type=st.sampled_from(["track", "page", "identify"]),
    name=st.sampled_from(["A", "B", "Order Completed"]),
    channel=st.sampled_from(["web", "email", "app"]),
    occurred_at=st.integers(T0, T0 + 90 * DAY),
    customer_id=st.just("c1"),
)


def folded(stream: list[Touchpoint]) -> Profile:
    profile = Profile()
    for tp in stream:
        before = msgspec.json.encode(profile)
        new = fold(profile, tp)
        assert msgspec.json.encode(profile) == before, "fold changed the profile given in"
        profile = new
    return profile


@given(st.lists(touchpoints, min_size=1, max_size=30))
def test_counts_and_times_are_the_streams(stream):
    p = folded(stream)
    assert p.counts == Counter(tp.name for tp in stream)
    assert p.last_at == {
        name: max(tp.occurred_at for tp in stream if tp.name == name) for name in p.counts
    }
    channels = {tp.channel for tp in stream}
    assert p.last_seen == {
        ch: max(tp.occurred_at for tp in stream if tp.channel == ch) for ch in channels
    }
    assert p.first_seen_at == min(tp.occurred_at for tp in stream)
    assert p.last_event_at == max(tp.occurred_at for tp in stream)
    assert p.order_count == p.counts.get("Order Completed", 0)
    assert set(p.engagement) == {tp.channel for tp in stream if tp.type in ENGAGEMENT_TYPES}


@given(st.lists(st.integers(0, 60 * DAY), min_size=1, max_size=20))
def test_engagement_is_each_event_halved_every_half_life(offsets):
    times = sorted(T0 + o for o in offsets)
    stream = [
        Touchpoint(event_id="e", type="page", name="A", channel="web", occurred_at=at)
        for at in times
    ]
    score, since = folded(stream).engagement["web"]
    last = times[-1]
    assert since == last
    assert score == pytest.approx(sum(0.5 ** ((last - at) / ENGAGEMENT_HALF_LIFE) for at in times))
