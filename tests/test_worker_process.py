"""The worker's batch processing over an in-memory partition backend (no Kafka)."""

from __future__ import annotations

from journey_fixtures import catalog_from_yaml, touchpoint

from orchestrator import wire
from orchestrator.bench.cost import MemoryBackend
from orchestrator.core.state import CustomerState
from orchestrator.topics import Topics
from orchestrator.worker import timers
from orchestrator.worker.process import MERGE_EVENT, Incoming, Processor

TOPICS = Topics("unit")


def _rec(value: bytes, offset: int = 0, key: bytes | None = b"k") -> Incoming:
    return Incoming(TOPICS.touchpoints, 0, offset, key, value)


def _actions(result):
    return [wire.decode_action(o.value) for o in result.out if o.topic.startswith("unit.actions.")]


def test_garbage_is_dead_lettered_with_reason_and_bytes_and_the_batch_goes_on():
    processor = Processor(catalog_from_yaml(), TOPICS)
    good = wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=1_000))
    result = processor.process(
        [_rec(b"\x00garbage", offset=5), _rec(good, offset=6)], MemoryBackend(), now=1_000
    )
    dead = [wire.decode_deadletter(o.value) for o in result.out if o.topic == TOPICS.deadletter]
    assert len(dead) == 1
    assert dead[0].reason == "undecodable"
    assert dead[0].original_value == b"\x00garbage"
    assert (dead[0].source_topic, dead[0].source_partition, dead[0].source_offset) == (
        TOPICS.touchpoints,
        0,
        5,
    )
    assert [a.step for a in _actions(result)] == ["send_welcome"]


def test_state_is_written_once_per_customer_per_batch_and_duplicates_change_nothing():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    writes: list[str] = []
    write = backend.write

    def counting_write(states, fired):  # type: ignore[no-untyped-def]
        writes.extend(c for c, _ in states)
        write(states, fired)

    backend.write = counting_write  # type: ignore[method-assign]
    tp = wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=1_000))
    result = processor.process([_rec(tp, 1), _rec(tp, 2)], backend, now=1_000)
    assert writes == ["c1"]
    assert len(_actions(result)) == 1
    again = processor.process([_rec(tp, 3)], backend, now=2_000)
    assert _actions(again) == []
    assert CustomerState.from_bytes(backend.states["c1"]) is not None


def test_a_tick_fires_due_timers_and_only_due_ones():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    tp = wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=1_000))
    processor.process([_rec(tp)], backend, now=1_000)
    assert len(backend.index) == 1
    due_at, customer, _ = timers.decode_index_key(backend.index[0])
    assert customer == "c1" and due_at == 1_000 + 3_600_000

    early = Incoming(TOPICS.ticks, 0, 0, None, timers.encode_tick(due_at - 1))
    assert _actions(processor.process([early], backend, now=due_at - 1)) == []
    assert len(backend.index) == 1

    tick = Incoming(TOPICS.ticks, 0, 1, None, timers.encode_tick(due_at + 10))
    fired = processor.process([tick], backend, now=due_at + 10)
    assert fired.fired == 1
    assert [a.step for a in _actions(fired)] == ["send_tips"]
    assert backend.index == []


def test_a_timer_replayed_in_the_batch_that_fired_it_as_a_no_op_survives():
    # The timer reached the changelog, its state did not (a worker lost mid-batch): the
    # new owner replays the sign-up in a batch where a tick comes first. The tick finds
    # no state and fires the entry as a no-op; the replay sets the same timer again (same
    # id, same due time), and removing the fired entry must not remove the live one.
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    signup = wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=1_000))
    processor.process([_rec(signup)], backend, now=1_000)
    (key,) = backend.index
    due_at = timers.decode_index_key(key)[0]
    backend.states.clear()  # the state was lost, the timer entry was not

    tick = Incoming(TOPICS.ticks, 0, 1, None, timers.encode_tick(due_at + 5))
    replay = processor.process([tick, _rec(signup, offset=0)], backend, now=due_at + 5)
    # The re-set timer is live: being due, it fires at the end of the same batch.
    assert replay.fired == 2
    assert [a.step for a in _actions(replay)] == ["send_welcome", "send_tips"]
    assert backend.index == []


def test_a_busy_partition_fires_its_due_timers_without_waiting_for_a_tick():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    processor.process([_rec(wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=1_000)))],
                      backend, now=1_000)  # fmt: skip
    due_at = timers.decode_index_key(backend.index[0])[0]
    other = wire.encode_touchpoint(touchpoint("c2", "Page Viewed", at=due_at - 10))
    assert processor.process([_rec(other, 1)], backend, now=due_at - 1).fired == 0
    result = processor.process([_rec(other, 2)], backend, now=due_at)
    assert result.fired == 1 and [a.step for a in _actions(result)] == ["send_tips"]
    assert backend.index == []


def test_forgetting_erases_state_and_suppresses_later_events():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    signup = wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=1_000))
    processor.process([_rec(signup)], backend, now=1_000)
    assert "c1" in backend.states

    forget = wire.encode_touchpoint(touchpoint("c1", "Customer Forgotten", at=2_000))
    processor.process([_rec(forget)], backend, now=2_000)
    assert "c1" not in backend.states
    assert not any("c1" in key for key in backend.states)  # the marker is a hash

    again = wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=3_000, event_id="new-id"))
    assert _actions(processor.process([_rec(again)], backend, now=3_000)) == []
    assert "c1" not in backend.states

    tick = Incoming(TOPICS.ticks, 0, 9, None, timers.encode_tick(10**10))
    assert _actions(processor.process([tick], backend, now=10**10)) == []  # timers are no-ops


def test_an_event_whose_processing_raises_is_dead_lettered_and_the_rest_carry_on(monkeypatch):
    from orchestrator.worker import process

    real = process.decide

    def flaky(state, event, catalog, **kw):
        if getattr(event, "event_id", "") == "boom":
            raise ZeroDivisionError("a bug in a condition")
        return real(state, event, catalog, **kw)

    monkeypatch.setattr(process, "decide", flaky)
    processor = Processor(catalog_from_yaml(), TOPICS)
    bad = wire.encode_touchpoint(touchpoint("c1", "Signed Up", at=1_000, event_id="boom"))
    good = wire.encode_touchpoint(touchpoint("c2", "Signed Up", at=1_000))
    result = processor.process([_rec(bad, 1), _rec(good, 2)], MemoryBackend(), now=1_000)
    dead = [wire.decode_deadletter(o.value) for o in result.out if o.topic == TOPICS.deadletter]
    assert [(d.reason, d.source_offset, d.original_value) for d in dead] == [
        ("processing_error", 1, bad)
    ]
    assert "ZeroDivisionError: a bug in a condition" in dead[0].detail
    assert [a.customer_id for a in _actions(result)] == ["c2"]


def test_a_merge_record_whose_state_does_not_read_is_dead_lettered_and_the_rest_carry_on():
    """``$merge`` records are the worker's own (identity stitching), but anyone can
    publish a touchpoint by that name: a bad state in it is bad input, not a crash."""
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    bad = wire.encode_touchpoint(touchpoint("c1", MERGE_EVENT, at=1_000, state='{"v": 7}'))
    good = wire.encode_touchpoint(touchpoint("c2", "Signed Up", at=1_000))
    result = processor.process([_rec(bad, 1), _rec(good, 2)], backend, now=1_000)
    dead = [wire.decode_deadletter(o.value) for o in result.out if o.topic == TOPICS.deadletter]
    assert [(d.reason, d.source_offset, d.original_value) for d in dead] == [
        ("processing_error", 1, bad)
    ]
    assert "not a customer state in a known format (format 7" in dead[0].detail
    assert [a.customer_id for a in _actions(result)] == ["c2"]
    assert "c1" not in backend.states  # nothing merged
