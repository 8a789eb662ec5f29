"""The worker under failure, on the real broker: kill -9, a worker lost from a group of
two, and recovery of state from the changelog into an empty data directory.

The expected actions are recomputed from the input by the pure core (the way Kafka's
own system tests use an offline verifier): a run must emit every expected action at
least once, and no action id outside the expected set. Duplicates of expected ids are
allowed (at-least-once) - connectors de-duplicate by action id.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import rocksdict
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import WorkerProcess, read_topic, wait_for

from orchestrator import wire
from orchestrator.clock import Clock
from orchestrator.core.decide import decide
from orchestrator.core.decision import TimerFired
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog
from orchestrator.records import CHANNELS, Context, Touchpoint
from orchestrator.topics import Topics, ensure_topics
from orchestrator.worker.faust_context import true_end_offsets

pytestmark = pytest.mark.kafka

#: An email at sign-up and a push 30 journey-hours later: with the clock at 3600x the
#: timers are pending for 30 s, so a crash in the middle of the stream leaves them all
#: (a busy worker fires due timers at once, without waiting for a tick).
JOURNEY = """
id: crash_welcome
name: Crash-test welcome
version: 1
entry:
  event: Signed Up
  reentry: never
steps:
  welcome:
    type: action
    channel: email
    template: welcome
    next: later
  later:
    type: wait
    duration: 30h
    next: tips
  tips:
    type: action
    channel: push
    template: tips
    next: done
  done:
    type: end
"""
SPEED = 3600.0
CUSTOMERS = 2_000
EVENTS_PER_CUSTOMER = 10  # one sign-up, then page views


def _workload(now: int) -> list[Touchpoint]:
    events = []
    for i in range(EVENTS_PER_CUSTOMER):
        for c in range(CUSTOMERS):
            cid = f"c{c:05d}"
            events.append(
                Touchpoint(
                    event_id=f"{cid}-{i}",
                    type="identify" if i == 0 else "page",
                    name="Signed Up" if i == 0 else "Page Viewed",
                    channel="web",
                    occurred_at=now + i,
                    customer_id=cid,
                    traits={"push_consent": True, "email": f"{cid}@example.com"} if i == 0 else {},
                    context=Context(timezone="UTC"),
                )
            )
    return events


def _expected(events: list[Touchpoint], catalog: Catalog) -> set[str]:
    states: dict[str, CustomerState | None] = {}
    ids: set[str] = set()
    timers = []
    for tp in events:
        d = decide(states.get(tp.subject), tp, catalog, customer_id=tp.subject)
        states[tp.subject] = d.state
        ids.update(a.action_id for a in d.actions)
        timers.extend(d.timers_set)
    for t in sorted(timers, key=lambda t: t.due_at):
        fired = TimerFired(t.customer_id, t.timer_id, t.due_at, t.due_at)
        d = decide(states[t.customer_id], fired, catalog, customer_id=t.customer_id)
        states[t.customer_id] = d.state
        ids.update(a.action_id for a in d.actions)
    return ids


def _setup(kafka, topics: Topics, tmp_path: Path) -> tuple[Path, Clock, set[str]]:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "crash.yaml").write_text(JOURNEY)
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    clock = Clock(SPEED, int(time.time() * 1000))
    events = _workload(clock.now())
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    for tp in events:
        producer.produce(
            topics.touchpoints, key=tp.subject.encode(), value=wire.encode_touchpoint(tp)
        )
    assert producer.flush(30) == 0
    expected = _expected(events, Catalog.from_yaml(JOURNEY))
    assert len(expected) == 2 * CUSTOMERS
    return journeys, clock, expected


def _clock_env(clock: Clock) -> dict[str, str]:
    return {"ROTA_CLOCK_SPEED": str(clock.speed), "ROTA_CLOCK_ORIGIN_MS": str(clock.origin_ms)}


def _emitted(kafka, topics: Topics, expected: set[str]) -> Counter[str]:
    """Read both action topics until every expected id is there; count each id."""

    def ids(msgs) -> Counter[str]:
        return Counter(wire.decode_action(m.value()).action_id for m in msgs)

    msgs = read_topic(
        kafka.bootstrap,
        topics.actions("email"),
        until=lambda m: len(set(ids(m))) >= CUSTOMERS,
        timeout=120,
    ) + read_topic(
        kafka.bootstrap,
        topics.actions("push"),
        until=lambda m: len(set(ids(m))) >= CUSTOMERS,
        timeout=120,
    )
    return ids(msgs)


def _consumed(worker: WorkerProcess) -> float:
    return worker.total("rota_events_consumed_total")


def test_kill_9_mid_stream_then_restart_loses_nothing_and_invents_nothing(
    kafka, topics, tmp_path, start_worker
):
    journeys, clock, expected = _setup(kafka, topics, tmp_path)
    first = start_worker(journeys, name="w0", **_clock_env(clock))
    total = CUSTOMERS * EVENTS_PER_CUSTOMER
    wait_for(lambda: _consumed(first) >= total // 3, timeout=90, what="a third consumed")
    first.kill()  # SIGKILL: no commit, no flush, no goodbye

    second = start_worker(journeys, name="w0", **_clock_env(clock))  # same data dir
    emitted = _emitted(kafka, topics, expected)
    assert set(emitted) == expected
    assert second.total("rota_timers_fired_total") > 0  # timers pending at the crash fired
    print(f"duplicates after kill -9: {sum(emitted.values()) - len(expected)}")


def test_a_worker_lost_from_a_group_of_two_hands_over_state_and_timers(
    kafka, topics, tmp_path, start_worker
):
    journeys, clock, expected = _setup(kafka, topics, tmp_path)
    survivor = start_worker(journeys, name="w0", **_clock_env(clock))
    lost = start_worker(journeys, name="w1", **_clock_env(clock))
    wait_for(
        lambda: _consumed(survivor) > 0 and _consumed(lost) > 0,
        timeout=90,
        what="both workers consuming their partitions",
    )
    lost.kill()
    emitted = _emitted(kafka, topics, expected)
    assert set(emitted) == expected
    assert survivor.total("rota_events_consumed_total") > 0


@contextlib.contextmanager
def _databases(data_dir: Path, table: str) -> Iterator[list[tuple[int, rocksdict.Rdict]]]:
    """Each partition database of a Faust RocksDB table in ``data_dir``, read-only."""
    paths = sorted(data_dir.glob(f"v1/tables/{table}-*.db"))
    dbs = [
        (
            int(p.stem.rsplit("-", 1)[1]),
            rocksdict.Rdict(str(p), access_type=rocksdict.AccessType.read_only()),
        )
        for p in paths
    ]
    try:
        yield dbs
    finally:
        for _, db in dbs:
            db.close()


def _persisted_offsets(data_dir: Path, table: str) -> dict[int, int]:
    """The changelog offset each partition's database says it holds (Faust's key)."""
    with _databases(data_dir, table) as dbs:
        return {partition: int(db[b"__faust\0offset__"]) for partition, db in dbs}


def _table(data_dir: Path, table: str) -> dict[bytes, bytes]:
    """Every key of a Faust RocksDB table across the partitions in ``data_dir``."""
    with _databases(data_dir, table) as dbs:
        return {k: v for _, db in dbs for k, v in db.items() if not k.startswith(b"__faust")}


def test_a_fresh_worker_rebuilds_identical_state_from_the_changelog(
    kafka, topics, tmp_path, start_worker
):
    journeys, clock, expected = _setup(kafka, topics, tmp_path)
    first = start_worker(journeys, name="first", **_clock_env(clock))
    _emitted(kafka, topics, expected)  # everything processed, timers fired
    wait_for(
        lambda: first.total("rota_events_consumed_total") >= CUSTOMERS * EVENTS_PER_CUSTOMER,
        timeout=60,
        what="all events consumed",
    )
    assert first.stop() == 0
    before = _table(tmp_path / "data-first", "customers")
    assert len(before) == CUSTOMERS
    # The worker writes its changelog itself: each partition's database records the
    # last changelog offset it holds, where a restart on this data directory resumes.
    changelog = f"{topics.prefix}-worker-customers-changelog"
    probe = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "offsets-probe"})
    reported = {
        (changelog, p): probe.get_watermark_offsets(TopicPartition(changelog, p), 10)[1]
        for p in range(4)
    }
    probe.close()
    ends = true_end_offsets(kafka.bootstrap, reported)
    last = {p: end - 1 for (_, p), end in ends.items()}
    assert _persisted_offsets(tmp_path / "data-first", "customers") == last
    # ...and was opened with the worker's memory budget, not Faust's (64 MiB buffers).
    options = list((tmp_path / "data-first").glob("v1/tables/*.db/OPTIONS-*"))
    assert options and all("write_buffer_size=8388608" in f.read_text() for f in options)

    second = start_worker(journeys, name="second", **_clock_env(clock))
    marker = Touchpoint(
        event_id="marker",
        type="identify",
        name="Signed Up",
        channel="web",
        occurred_at=clock.now(),
        customer_id="marker-customer",
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(
        topics.touchpoints, key=b"marker-customer", value=wire.encode_touchpoint(marker)
    )
    assert producer.flush(10) == 0
    wait_for(
        lambda: second.total("rota_events_consumed_total") >= 1,
        timeout=90,
        what="the fresh worker to recover and process a new event",
    )
    # Recovered in bulk (changelog_replay), not record by record through Faust: every
    # customer's latest record, and the timers' sets and deletes.
    assert second.total("rota_changelog_records_recovered_total", table="customers") >= CUSTOMERS
    assert second.total("rota_changelog_records_recovered_total", table="timers") > 0
    assert second.stop() == 0
    after = _table(tmp_path / "data-second", "customers")
    after.pop(b"marker-customer")
    assert after == before
