"""Identity stitching, the pure part: an anonymous visitor's state folded into the known
customer's (orchestrator.core.identity). The protocol that moves it between partitions
is tested on the real broker in test_identity_stitching.py."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.decide import decide
from orchestrator.core.decision import TimerFired
from orchestrator.core.identity import merge
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog
from orchestrator.records import Touchpoint, parse_time

T0 = parse_time("2026-03-02T10:00:00Z")
H = 3_600_000
_ids = itertools.count()

CATALOG = Catalog.from_yaml(
    """
id: browse
name: Browse
version: 1
entry: {event: Product Viewed, reentry: never}
steps:
  wait: {type: wait, duration: 2h, next: nudge}
  nudge: {type: action, channel: web, template: nudge, next: done}
  done: {type: end}
""",
    """
id: loyalty
name: Loyalty
version: 1
entry: {event: Order Completed, reentry: always}
steps:
  thanks: {type: action, channel: web, template: thanks, next: pause}
  pause: {type: wait, duration: 1d, next: done}
  done: {type: end}
""",
)


def run(events: list[Touchpoint], subject: str) -> CustomerState | None:
    state = None
    for tp in events:
        state = decide(state, tp, CATALOG, customer_id=subject).state
    return state


def tp(name: str, at: int, *, anon: str | None = None, customer: str | None = None, **traits):
    return Touchpoint(
        event_id=f"e{next(_ids)}",
        type="track",
        name=name,
        channel="web",
        occurred_at=at,
        customer_id=customer,
        anonymous_id=anon,
        traits=traits,
    )


def test_the_visitors_history_journeys_and_events_become_the_customers():
    visitor = [
        tp("Product Viewed", T0, anon="v1", plan="free", colour="red"),
        tp("Page Viewed", T0 + 1, anon="v1"),
    ]
    known = [tp("Order Completed", T0 + 5, customer="c1", plan="gold")]
    anon_state = run(visitor, "anon:v1")
    known_state = run(known, "c1")
    assert anon_state is not None and known_state is not None

    merged, timers = merge(known_state, anon_state, customer="c1", now=T0 + 10, max_seen=100)

    assert merged.customer_id == "c1" and merged.identities == ("anon:v1",)
    assert merged.profile.traits == {"plan": "gold", "colour": "red"}  # the customer wins
    assert merged.profile.counts == {
        "Product Viewed": 1,
        "Page Viewed": 1,
        "Order Completed": 1,
    }
    assert merged.profile.first_seen_at == T0 and merged.profile.last_event_at == T0 + 5
    assert sorted(i.journey_id for i in merged.instances) == ["browse", "loyalty"]
    (timer,) = timers  # the adopted instance's wait moves with it
    browse = next(i for i in merged.instances if i.journey_id == "browse")
    assert (timer.customer_id, timer.timer_id, timer.due_at) == ("c1", browse.timer_id, T0 + 2 * H)
    # A visitor event replayed under the customer (forwarded after the merge) is a duplicate.
    again = decide(merged, visitor[1], CATALOG, customer_id="c1")
    assert again.state is merged
    # The adopted wait fires on the customer's side and the journey goes on there.
    fired = decide(
        merged,
        TimerFired("c1", browse.timer_id, T0 + 2 * H, T0 + 2 * H),
        CATALOG,
        customer_id="c1",
    )
    assert [(a.customer_id, a.step) for a in fired.actions] == [("c1", "nudge")]


def test_where_both_are_in_a_journey_the_customers_own_instance_carries_on():
    anon_state = run([tp("Order Completed", T0, anon="v1")], "anon:v1")
    known_state = run([tp("Order Completed", T0 + 9, customer="c1")], "c1")
    assert anon_state is not None and known_state is not None
    merged, timers = merge(known_state, anon_state, customer="c1", now=T0 + 10, max_seen=100)
    assert merged.instances == known_state.instances and timers == ()
    assert merged.history["loyalty"].entries == 2


def test_a_visitor_seen_before_the_customer_ever_was_becomes_a_new_customer():
    anon_state = run([tp("Product Viewed", T0, anon="v9", plan="trial")], "anon:v9")
    assert anon_state is not None
    merged, _ = merge(None, anon_state, customer="c9", now=T0, max_seen=100)
    assert merged.customer_id == "c9" and merged.profile.traits == {"plan": "trial"}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["Product Viewed", "Page Viewed", "Order Completed"]), max_size=12),
    st.lists(st.sampled_from(["Product Viewed", "Page Viewed", "Order Completed"]), max_size=12),
)
def test_no_event_is_lost_or_counted_twice_by_a_merge(anon_names, known_names):
    anon = run([tp(n, T0 + i, anon="v") for i, n in enumerate(anon_names)], "anon:v")
    known = run([tp(n, T0 + i, customer="c") for i, n in enumerate(known_names)], "c")
    empty = CustomerState.empty("anon:v")
    merged, _ = merge(known, anon or empty, customer="c", now=T0 + 99, max_seen=1000)
    a, k = (anon or empty).profile, (known or CustomerState.empty("c")).profile
    for name in {*anon_names, *known_names}:
        assert merged.profile.counts.get(name, 0) == a.counts.get(name, 0) + k.counts.get(name, 0)
    assert set(merged.seen) == set((anon or empty).seen) | set((known or empty).seen)
    assert merged.profile.order_count == a.order_count + k.order_count


# -- the protocol, over two partitions' backends (the real broker: test_identity_stitching)


def test_the_visitor_moves_over_once_and_its_later_events_follow():
    from test_worker_process import MemoryBackend

    from orchestrator import wire
    from orchestrator.topics import Topics
    from orchestrator.worker.process import Incoming, Processor

    topics = Topics("unit")
    processor = Processor(CATALOG, topics)
    visitor_side, customer_side = MemoryBackend(), MemoryBackend()

    def feed(backend, *tps: Touchpoint) -> list[Touchpoint]:
        records = [Incoming(topics.touchpoints, 0, i, None, wire.encode_touchpoint(t))
                   for i, t in enumerate(tps)]  # fmt: skip
        result = processor.process(records, backend, now=T0 + 10)  # before any wait is due
        return [
            wire.decode_touchpoint(o.value) for o in result.out if o.topic == topics.touchpoints
        ]

    browse = tp("Product Viewed", T0, anon="v1", colour="red")
    assert feed(visitor_side, browse) == []
    (stitch,) = feed(customer_side, tp("Signed In", T0 + 1, anon="v1", customer="c1"))
    assert stitch.subject == "anon:v1"
    assert feed(customer_side, tp("Signed In", T0 + 2, anon="v1", customer="c1")) == []  # once

    (merge_tp,) = feed(visitor_side, stitch)
    assert merge_tp.subject == "c1" and "anon:v1" not in visitor_side.states
    assert feed(visitor_side, stitch) == []  # a replayed request moves nothing twice
    assert feed(customer_side, merge_tp) == []
    c1 = CustomerState.from_bytes(customer_side.states["c1"])
    assert c1.identities == ("anon:v1",) and c1.profile.traits["colour"] == "red"
    assert [i.journey_id for i in c1.instances] == ["browse"]
    assert any(b"c1" in key for key in customer_side.index)  # the adopted wait's timer

    feed(customer_side, merge_tp)  # a replayed merge changes nothing
    assert CustomerState.from_bytes(customer_side.states["c1"]) == c1

    later = tp("Page Viewed", T0 + 3, anon="v1")
    (forwarded,) = feed(visitor_side, later)
    assert (forwarded.subject, forwarded.event_id) == ("c1", later.event_id)
    feed(customer_side, forwarded, forwarded)  # twice: processed once
    assert CustomerState.from_bytes(customer_side.states["c1"]).profile.counts["Page Viewed"] == 1


def test_several_identifiers_resolve_to_one_customer():
    from test_worker_process import MemoryBackend

    from orchestrator import wire
    from orchestrator.topics import Topics
    from orchestrator.worker.process import Incoming, Processor

    topics = Topics("unit")
    processor = Processor(CATALOG, topics)
    sides = {"anon:device:abc": MemoryBackend(), "anon:loyalty:1": MemoryBackend()}
    customer_side = MemoryBackend()

    def feed(backend, t: Touchpoint) -> list[Touchpoint]:
        rec = Incoming(topics.touchpoints, 0, 0, None, wire.encode_touchpoint(t))
        out = processor.process([rec], backend, now=T0 + H).out
        return [wire.decode_touchpoint(o.value) for o in out if o.topic == topics.touchpoints]

    feed(sides["anon:device:abc"], tp("App Opened", T0, anon="device:abc"))
    feed(sides["anon:loyalty:1"], tp("Store Visit", T0 + 1, anon="loyalty:1"))
    for n, ident in enumerate(("device:abc", "loyalty:1")):
        (stitch,) = feed(customer_side, tp("Alias", T0 + 2 + n, anon=ident, customer="c1"))
        (merge_tp,) = feed(sides[stitch.subject], stitch)
        feed(customer_side, merge_tp)
    c1 = CustomerState.from_bytes(customer_side.states["c1"])
    assert c1.identities == ("anon:device:abc", "anon:loyalty:1")
    assert c1.profile.counts == {"App Opened": 1, "Store Visit": 1, "Alias": 2}
    (forwarded,) = feed(sides["anon:loyalty:1"], tp("Store Visit", T0 + 9, anon="loyalty:1"))
    assert forwarded.subject == "c1"
