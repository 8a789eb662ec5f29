"""A partition's tables in RocksDB, changelogged through the worker's own producer.

Faust's table API costs a future, a coroutine and a key-index update per write (its
send buffer); at a write per customer per batch that was a quarter of the worker's
time. So the worker writes each partition's RocksDB database itself and produces the
changelog records Faust would have produced - same topic, partition, key and value -
through ``Outputs``. Recovery, standby replicas and the inspector read them as before;
Faust still opens, recovers and closes the databases.

Durability is Faust's own order: a write goes to RocksDB, then to the changelog; the
worker flushes the changelog before it takes the next batch (so before Faust commits
the offsets of this one), and records the acknowledged changelog offsets as persisted,
which is where recovery into this data directory resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from rocksdict import WriteBatch

from orchestrator.worker import timers
from orchestrator.worker.faust_context import changelog_topic, partition_db, persist_offset
from orchestrator.worker.outputs import Outputs


class Changelogged:
    """One Faust table, written directly."""

    def __init__(self, table: Any, outputs: Outputs) -> None:
        self.table = table
        self.topic = changelog_topic(table)
        self.outputs = outputs
        outputs.track(self.topic)

    def partition(self, partition: int) -> _Partition:
        return _Partition(partition_db(self.table, partition), self.topic, partition, self.outputs)


class _Partition:
    """One partition of a ``Changelogged`` table, its database looked up once."""

    def __init__(self, db: Any, topic: str, partition: int, outputs: Outputs) -> None:
        self.db = db
        self._topic = topic
        self.partition = partition
        self._outputs = outputs

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)
        self._outputs.send(self._topic, key, value, self.partition)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)
        self._outputs.send(self._topic, key, None, self.partition)

    def write(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Puts and deletes (``None``) as one RocksDB write, then their changelog
        records: one write-ahead-log append instead of one per key."""
        batch = WriteBatch(raw_mode=True)
        send, topic, partition = self._outputs.send, self._topic, self.partition
        records = []
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
            records.append((key, value))
        if records:
            self.db.write(batch)
        for key, value in records:
            send(topic, key, value, partition)


class ScanFloors:
    """Per partition, a key no live timer index entry sorts below: where the next scan
    for due timers starts.

    Fired entries are deleted, and RocksDB keeps a deleted key as a tombstone until a
    compaction drops it; a scan from the first key steps over every one of them. With
    tens of thousands fired that was milliseconds per scan (8.6 ms over 50,000 here),
    and the worker scans each partition every batch. A floor is only trusted while
    nothing but this worker wrote the database since it was set: the database object
    and its sequence number are unchanged (recovery and standby replicas write it too,
    and a partition that moved away and back is another database object).
    """

    def __init__(self) -> None:
        self._at: dict[int, tuple[int, int, bytes]] = {}

    def get(self, partition: int, db: Any) -> bytes | None:
        entry = self._at.get(partition)
        if entry is None:
            return None
        ident, seq, key = entry
        if ident != id(db) or seq != db.latest_sequence_number():
            del self._at[partition]
            return None
        return key

    def set(self, partition: int, db: Any, key: bytes) -> None:
        """``key`` as the floor of ``db`` as it is now."""
        self._at[partition] = (id(db), db.latest_sequence_number(), key)

    @contextmanager
    def kept(self, partition: int, db: Any) -> Iterator[None]:
        """Around a write of this worker's to ``db`` that sets no index entry below the
        floor: the floor stays. The removal of fired entries is one; Faust's record of
        the changelog offset the database holds is another (its key,
        ``__faust<NUL>offset__``, sorts after every index entry). Written after each
        batch whose timer changelog records Kafka acknowledged, that record used to
        invalidate the floor, so the partition's next scan started from the first key
        and stepped over every fired entry's tombstone again - 0.17-0.29 ms per scan on
        average once 10,000-20,000 timers had fired, a scan per partition per batch,
        growing for as long as timers fire."""
        floor = self.get(partition, db)
        yield
        if floor is not None:
            self.set(partition, db, floor)


class Tables:
    """The worker's two tables: customer states and the timer index."""

    def __init__(self, customers: Any, timer_index: Any, outputs: Outputs) -> None:
        self.customers = Changelogged(customers, outputs)
        self.timers = Changelogged(timer_index, outputs)
        self._by_topic = {t.topic: t for t in (self.customers, self.timers)}
        self.outputs = outputs
        self._floors = ScanFloors()

    def partition(self, partition: int) -> PartitionStore:
        return PartitionStore(
            self.customers.partition(partition),
            self.timers.partition(partition),
            self._floors,
        )

    def persist_offsets(self) -> None:
        """Record the changelog offsets Kafka acknowledged since the last call (call it
        after ``Outputs.flush``)."""
        for (topic, partition), offset in self.outputs.take_acked().items():
            table = self._by_topic[topic].table
            keep: AbstractContextManager[None] = nullcontext()
            if table is self.timers.table:
                keep = self._floors.kept(partition, partition_db(table, partition))
            with keep:
                persist_offset(table, topic, partition, offset)


class PartitionStore:
    """The ``PartitionBackend`` (``worker/process.py``) of one partition."""

    def __init__(self, customers: _Partition, timer_index: _Partition, floors: ScanFloors) -> None:
        self._customers = customers
        self._timers = timer_index
        self._floors = floors

    def get_state(self, customer: str) -> bytes | None:
        return self._customers.get(customer.encode())

    def put_state(self, customer: str, value: bytes) -> None:
        self._customers.put(customer.encode(), value)

    def delete_state(self, customer: str) -> None:
        self._customers.delete(customer.encode())

    def put_timer(self, index_key: bytes) -> None:
        floor = self._floor()
        self._timers.put(index_key, b"")
        if floor is not None:
            self._set_floor(min(floor, index_key))

    def write(self, states: Sequence[tuple[str, bytes | None]], fired: Iterable[bytes]) -> None:
        self._customers.write((customer.encode(), value) for customer, value in states)
        with self._floors.kept(self._timers.partition, self._timers.db):
            self._timers.write((index_key, None) for index_key in fired)  # never lowers it

    def due_timers(self, now: int, limit: int) -> list[bytes]:
        """The first ``limit`` entries due by ``now``, in due order. The caller fires
        them all (their removal may be written later: the next scan starts after them)."""
        upper = timers.upper_bound(now)
        floor = self._floor()
        it = self._timers.db.iter()
        if floor is None:
            it.seek_to_first()
        else:
            it.seek(floor)
        due: list[bytes] = []
        while it.valid():
            key = it.key()
            if key >= upper:
                break
            if len(due) == limit:
                upper = key  # the first one left for the next scan
                break
            due.append(key)
            it.next()
        self._set_floor(upper if floor is None else max(upper, floor))
        return due

    def _floor(self) -> bytes | None:
        return self._floors.get(self._timers.partition, self._timers.db)

    def _set_floor(self, key: bytes) -> None:
        self._floors.set(self._timers.partition, self._timers.db, key)
