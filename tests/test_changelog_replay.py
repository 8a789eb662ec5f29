"""Bulk recovery of a table partition from its changelog, on the real broker and real
RocksDB: what it applies, where it stops, and that stopping early loses nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import rocksdict
from confluent_kafka import Producer

from orchestrator.topics import ensure_topics
from orchestrator.worker import changelog_replay
from orchestrator.worker.changelog_replay import Target, replay

pytestmark = pytest.mark.kafka

Record = tuple[bytes, bytes | None]


def _changelog(kafka, topics, records: dict[int, list[Record]]) -> str:
    topic = f"{topics.prefix}-replay-changelog"
    ensure_topics(kafka.bootstrap, [topic], partitions=len(records))
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    for partition, rows in records.items():
        for key, value in rows:
            producer.produce(topic, partition=partition, key=key, value=value)
    assert producer.flush(10) == 0
    return topic


def _db(path: Path) -> rocksdict.Rdict:
    return rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))


def _applied(rows: list[Record]) -> dict[bytes, bytes]:
    """What a table holds after ``rows``: the last value per key, tombstones delete."""
    state: dict[bytes, bytes] = {}
    for key, value in rows:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def _rows(n: int, seed: int) -> list[Record]:
    """Puts, overwrites and tombstones over a few keys."""
    return [
        (f"k{i % 17}".encode(), None if i % 7 == 3 else f"v{seed}-{i}".encode()) for i in range(n)
    ]


def _far() -> float:
    return time.monotonic() + 60


def test_each_partition_gets_its_records_up_to_its_end_and_the_offset_reached(
    kafka, topics, tmp_path
):
    records = {0: _rows(300, 0), 1: _rows(120, 1)}
    topic = _changelog(kafka, topics, records)
    dbs = {p: _db(tmp_path / f"p{p}") for p in records}
    persisted: dict[int, list[int]] = {0: [], 1: []}
    # Partition 1 stops short of the log's end: what follows belongs to the next owner
    # of the range (Faust's recovery reads up to the end it measured, no further).
    ends = {0: 300, 1: 100}
    targets = {(topic, p): Target(dbs[p], 0, ends[p], persisted[p].append) for p in records}

    applied = replay(kafka.bootstrap, targets, _far())

    for p, rows in records.items():
        assert dict(dbs[p].items()) == _applied(rows[: ends[p]])
        assert persisted[p][-1] == ends[p] - 1
        assert applied[(topic, p)].offset == ends[p] - 1
        assert applied[(topic, p)].records == ends[p]


def test_it_resumes_after_the_persisted_offset(kafka, topics, tmp_path):
    rows = _rows(200, 2)
    topic = _changelog(kafka, topics, {0: rows})
    db = _db(tmp_path / "p0")
    for key, value in _applied(rows[:150]).items():  # a data directory up to offset 149
        db.put(key, value)

    applied = replay(kafka.bootstrap, {(topic, 0): Target(db, 150, 200, lambda _: None)}, _far())

    assert applied[(topic, 0)].records == 50
    assert dict(db.items()) == _applied(rows)


def test_stopped_early_the_database_is_exactly_the_log_up_to_the_offset_it_recorded(
    kafka, topics, tmp_path, monkeypatch
):
    rows = _rows(400, 3)
    topic = _changelog(kafka, topics, {0: rows})
    db = _db(tmp_path / "p0")
    monkeypatch.setattr(changelog_replay, "FETCH_RECORDS", 50)
    stop = threading.Event()
    persisted: list[int] = []

    def persist(offset: int) -> None:
        persisted.append(offset)
        stop.set()  # as a rebalance would, after the first write batch

    applied = replay(kafka.bootstrap, {(topic, 0): Target(db, 0, 400, persist)}, _far(), stop)

    assert persisted and persisted[-1] < 399  # stopped before the end...
    assert applied[(topic, 0)].offset == persisted[-1]
    # ...with the database consistent with the offset Faust's recovery resumes after.
    assert dict(db.items()) == _applied(rows[: persisted[-1] + 1])


def test_a_passed_deadline_applies_nothing(kafka, topics, tmp_path):
    topic = _changelog(kafka, topics, {0: _rows(10, 4)})
    db = _db(tmp_path / "p0")
    persisted: list[int] = []

    applied = replay(
        kafka.bootstrap,
        {(topic, 0): Target(db, 0, 10, persisted.append)},
        time.monotonic() - 1,
    )

    assert applied == {} and persisted == [] and dict(db.items()) == {}
