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
        self._partition = partition
        self._outputs = outputs

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)
        self._outputs.send(self._topic, key, value, self._partition)

    def delete(self, key: bytes) -> None:
        self.db.delete(key)
        self._outputs.send(self._topic, key, None, self._partition)

    def write(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Puts and deletes (``None``) as one RocksDB write, then their changelog
        records: one write-ahead-log append instead of one per key."""
        batch = WriteBatch(raw_mode=True)
        send, topic, partition = self._outputs.send, self._topic, self._partition
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


class Tables:
    """The worker's two tables: customer states and the timer index."""

    def __init__(self, customers: Any, timer_index: Any, outputs: Outputs) -> None:
        self.customers = Changelogged(customers, outputs)
        self.timers = Changelogged(timer_index, outputs)
        self._by_topic = {t.topic: t for t in (self.customers, self.timers)}
        self.outputs = outputs

    def partition(self, partition: int) -> PartitionStore:
        return PartitionStore(self.customers.partition(partition), self.timers.partition(partition))

    def persist_offsets(self) -> None:
        """Record the changelog offsets Kafka acknowledged since the last call (call it
        after ``Outputs.flush``)."""
        for (topic, partition), offset in self.outputs.take_acked().items():
            persist_offset(self._by_topic[topic].table, topic, partition, offset)


class PartitionStore:
    """The ``PartitionBackend`` (``worker/process.py``) of one partition."""

    def __init__(self, customers: _Partition, timer_index: _Partition) -> None:
        self._customers = customers
        self._timers = timer_index

    def get_state(self, customer: str) -> bytes | None:
        return self._customers.get(customer.encode())

    def put_state(self, customer: str, value: bytes) -> None:
        self._customers.put(customer.encode(), value)

    def delete_state(self, customer: str) -> None:
        self._customers.delete(customer.encode())

    def put_timer(self, index_key: bytes) -> None:
        self._timers.put(index_key, b"")

    def write(self, states: Sequence[tuple[str, bytes | None]], fired: Iterable[bytes]) -> None:
        self._customers.write((customer.encode(), value) for customer, value in states)
        self._timers.write((index_key, None) for index_key in fired)

    def due_timers(self, now: int, limit: int) -> Iterator[bytes]:
        upper = timers.upper_bound(now)
        it = self._timers.db.iter()
        it.seek_to_first()
        n = 0
        while it.valid() and n < limit:
            key = it.key()
            if key >= upper:
                break
            yield key
            n += 1
            it.next()
