"""Deciding a batch before the one before it is written (``worker/pipeline.py``) must
change nothing: the same records out and the same tables as writing each batch first.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from journey_fixtures import catalog_from_yaml, touchpoint
from test_worker_process import TOPICS, MemoryBackend

from orchestrator import wire
from orchestrator.records import Touchpoint
from orchestrator.worker import timers
from orchestrator.worker.process import STITCH_EVENT, BatchResult, Incoming, Processor

HOUR = 3_600_000
CUSTOMERS = ("c1", "c2", "c3")


def _event(kind: str, who: int, at: int, serial: int) -> Incoming:
    customer = CUSTOMERS[who % len(CUSTOMERS)]
    if kind == "tick":
        return Incoming(TOPICS.ticks, 0, serial, None, timers.encode_tick(at))
    if kind == "visit":  # an anonymous visitor, merged into the customer once linked
        tp = Touchpoint(
            event_id=f"v{serial}", type="page", name="Page Viewed", channel="web",
            occurred_at=at, anonymous_id=f"v-{customer}",
        )  # fmt: skip
    elif kind == "stitch":  # the visitor's partition is asked to hand over
        tp = Touchpoint(
            event_id=f"$stitch:anon:v-{customer}:{customer}", type="alias", name=STITCH_EVENT,
            channel="web", occurred_at=at, anonymous_id=f"v-{customer}",
            properties={"into": customer},
        )  # fmt: skip
    elif kind == "signin":  # names both: links the visitor to the customer
        tp = Touchpoint(
            event_id=f"s{serial}", type="identify", name="Signed In", channel="web",
            occurred_at=at, customer_id=customer, anonymous_id=f"v-{customer}",
        )  # fmt: skip
    elif kind == "duplicate":
        tp = touchpoint(customer, "Signed Up", at=at, event_id=f"{customer}-signup")
    else:
        name = {"signup": "Signed Up", "forget": "Customer Forgotten", "view": "Page Viewed"}
        tp = touchpoint(customer, name[kind], at=at, event_id=f"{customer}-{kind}-{serial}")
    return Incoming(TOPICS.touchpoints, 0, serial, tp.subject.encode(), wire.encode_touchpoint(tp))


_kinds = st.sampled_from(
    ["signup", "duplicate", "view", "tick", "tick", "forget", "visit", "stitch", "signin"]
)
_streams = st.lists(
    st.lists(st.tuples(_kinds, st.integers(0, 2), st.integers(0, 3 * HOUR)), max_size=6),
    min_size=1,
    max_size=8,
)


def _run(batches: list[list[tuple[str, int, int]]], *, pipelined: bool):
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    out: list[tuple[str, bytes | None, bytes]] = []
    previous: BatchResult | None = None
    now = 0
    serial = 0
    for batch in batches:
        now += HOUR
        records = []
        for kind, who, offset in batch:
            serial += 1
            records.append(_event(kind, who, min(now, offset + serial), serial))
        result = processor.process(records, backend, now=now, defer_state=True, previous=previous)
        out += [(o.topic, o.key, o.value) for o in result.out]
        if pipelined:  # the batch before is written only now, after this one was decided
            if previous is not None:
                previous.apply_state()
            previous = result
        else:
            result.apply_state()
    if previous is not None:
        previous.apply_state()
    return out, backend.states, backend.index


@settings(max_examples=300, deadline=None)
@given(_streams)
def test_deciding_before_the_previous_batch_is_written_changes_nothing(batches):
    assert _run(batches, pipelined=True) == _run(batches, pipelined=False)


def test_the_next_batch_sees_the_unwritten_state_of_the_one_before():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    signup = _event("duplicate", 0, 1_000, 1)
    first = processor.process([signup], backend, now=1_000, defer_state=True)
    assert backend.states == {}  # not written yet
    again = processor.process([signup], backend, now=2_000, defer_state=True, previous=first)
    assert [o for o in again.out if ".actions." in o.topic] == []  # a duplicate, not a 2nd entry


def test_a_timer_the_batch_before_fired_does_not_fire_again_before_its_removal():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    processor.process([_event("signup", 0, 1_000, 1)], backend, now=1_000)
    due = HOUR + 1_000
    fired = processor.process([], backend, now=due, defer_state=True)
    assert fired.fired == 1 and len(backend.index) == 1  # removal still pending
    after = processor.process([], backend, now=due + 1, defer_state=True, previous=fired)
    assert after.fired == 0


def test_a_timer_set_again_after_the_batch_before_fired_it_survives_that_batch_s_write():
    # As in test_worker_process: the state was lost, the timer entry was not. The batch
    # before fires the entry as a no-op; this one replays the sign-up, setting the same
    # timer again - the batch before must not remove it when it is written.
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    signup = _event("duplicate", 0, 1_000, 1)
    processor.process([signup], backend, now=1_000)
    (key,) = backend.index
    backend.states.clear()
    due = timers.decode_index_key(key)[0]
    noop = processor.process([], backend, now=due + 5, defer_state=True)
    assert noop.fired == 1
    replay = processor.process([signup], backend, now=1_000, defer_state=True, previous=noop)
    noop.apply_state()
    replay.apply_state()
    assert backend.index == [key]


def test_forgetting_a_customer_the_batch_before_changed_keeps_them_forgotten():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    signup = processor.process(
        [_event("signup", 0, 1_000, 1)], backend, now=1_000, defer_state=True
    )
    forget = processor.process(
        [_event("forget", 0, 2_000, 2)], backend, now=2_000, defer_state=True, previous=signup
    )
    signup.apply_state()
    forget.apply_state()
    assert "c1" not in backend.states
