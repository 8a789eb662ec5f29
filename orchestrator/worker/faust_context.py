"""The one place that touches Faust internals (faust-streaming 0.15).

1. Table writes need "the current event" to pick the changelog partition, and inside a
   ``take_events`` batch there is none; ``event_context`` sets it per event.
2. Timers are fired per partition, so the tick handler scans that partition's RocksDB
   database directly (``partition_db``), in key order.
3. Table recovery reads a changelog up to the broker's high watermark. Some brokers
   report it wrongly (the embedded Tansu broker gives the base offset of the last record
   batch + 1, dropping the rest of that batch), which loses state on recovery and fails
   Faust's consistency check on restart. ``install_true_changelog_ends`` makes recovery
   use the offset after the last record actually readable - the same number on a
   correct broker.

Both are covered by the worker's integration tests; a Faust upgrade that breaks them
fails there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from faust import streams
from faust.tables import recovery


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    token = streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        streams._current_event.reset(token)


def partition_db(table: Any, partition: int) -> Any:
    """The rocksdict ``Rdict`` holding ``table``'s keys of ``partition``."""
    return table.data._db_for_partition(partition)


def true_end_offsets(
    bootstrap: str, reported: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """The offset after the last readable record of each partition, read from the
    reported high watermark on (a correct broker has nothing past it)."""
    ends = dict(reported)
    probe = {tp: hw for tp, hw in reported.items() if hw > 0}
    if not probe:
        return ends
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "rota-changelog-probe",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, hw - 1) for (t, p), hw in probe.items()])
        pending = set(probe)
        while pending:
            msgs = consumer.consume(1000, timeout=1.0)
            if not msgs:
                break
            for msg in msgs:
                tp = (msg.topic() or "", msg.partition() or 0)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(tp)
                    continue
                ends[tp] = max(ends[tp], (msg.offset() or 0) + 1)
    finally:
        consumer.close()
    return ends


def install_true_changelog_ends() -> None:
    """Patch Faust's recovery to use ``true_end_offsets`` (idempotent)."""
    cls = recovery.Recovery
    if getattr(cls, "_rota_true_ends", False):
        return
    original = cls._build_highwaters

    async def build_highwaters(
        self: Any, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await original(self, consumer, tps, destination, title)
        # Faust stores "last offset" (= end - 1) here; -1 means empty.
        reported = {(tp.topic, tp.partition): v + 1 for tp, v in destination.items()}
        bootstrap = ",".join(f"{u.host}:{u.port}" for u in self.app.conf.broker)
        ends = await asyncio.to_thread(true_end_offsets, bootstrap, reported)
        for tp in list(destination):
            destination[tp] = ends[(tp.topic, tp.partition)] - 1

    cls._build_highwaters = build_highwaters  # type: ignore[method-assign]
    cls._rota_true_ends = True  # type: ignore[attr-defined]
