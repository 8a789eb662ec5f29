"""The Faust worker: wires topics and RocksDB tables to ``worker.process``.

One agent consumes the touchpoints topic and the ticks topic together (co-partitioned:
partition ``p`` of both goes to the same worker), in batches. Each batch is split by
partition and processed over that partition's tables (``partition_store.py``). Actions,
dead letters and the tables' changelog records go through one producer (``outputs.py``),
flushed before the state is written and again before Faust may commit the consumed
offsets - in the background, while the next batch is decided (``pipeline.py``): a crash
replays, never loses (and replays are harmless: the core de-duplicates by event id and
action ids are deterministic).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from orchestrator import metrics
from orchestrator.kafka_security import faust_credentials
from orchestrator.settings import Settings
from orchestrator.worker import timers
from orchestrator.worker.faust_context import (
    batches,
    install_fetch_wait,
    install_worker_patches,
    partition_db,
)
from orchestrator.worker.outputs import Outputs
from orchestrator.worker.partition_store import Tables
from orchestrator.worker.pipeline import Pipeline
from orchestrator.worker.process import BatchResult, Incoming, Processor
from orchestrator.worker.web import install_web

log = logging.getLogger(__name__)


def _observe_lag(app: Any, by_partition: dict[int, list[Any]]) -> None:
    """Lag per source partition, from the high watermark the consumer already fetched
    (no broker round trip). A broker that reports the watermark low (the embedded one)
    can make it read 0 a little early; never negative."""
    for events in by_partition.values():
        last: dict[Any, int] = {}
        for event in events:
            last[event.message.tp] = event.message.offset
        for tp, offset in last.items():
            high = app.consumer.highwater(tp)
            if high is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - offset - 1)
                )


def _observe_sizes(customers: Any, timer_index: Any, partition: int) -> None:
    """RocksDB's own key-count estimates: cheap, no scan, good enough for dashboards."""
    estimate = "rocksdb.estimate-num-keys"
    label = str(partition)
    metrics.TIMERS_PENDING.labels(label).set(
        partition_db(timer_index, partition).property_int_value(estimate) or 0
    )
    metrics.STATE_CUSTOMERS.labels(label).set(
        partition_db(customers, partition).property_int_value(estimate) or 0
    )


class _Phases:
    """Adds the time since the previous mark to ``rota_worker_seconds{phase}``."""

    def __init__(self) -> None:
        self._counters = {
            phase: metrics.WORKER_SECONDS.labels(phase) for phase in metrics.WORKER_PHASES
        }
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self._counters[phase].inc(now - self._last)
        self._last = now


def _raw_topic(app: faust.App, name: str, partitions: int) -> Any:
    return app.topic(name, partitions=partitions, key_serializer="raw", value_serializer="raw")


def create_app(settings: Settings, bootstrap: str, processor: Processor) -> faust.App:
    topics = settings.topics
    clock = settings.clock
    install_worker_patches()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_credentials(),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.web_port,
        web_host=settings.web_host,
        canonical_url=settings.web_url or f"http://{settings.web_host}:{settings.web_port}",
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_ms / 4000),
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        table_key_index_size=10_000,
        producer_linger_ms=5,
        # Faust would otherwise declare topics with its defaults; ``rota`` creates them.
        topic_allow_declare=True,
    )
    install_fetch_wait(app, settings.fetch_wait_ms)
    source = app.topic(
        topics.touchpoints, topics.ticks, key_serializer="raw", value_serializer="raw"
    )
    ticks = _raw_topic(app, topics.ticks, settings.partitions)
    # bytes key and value types make Faust use the raw codec for the table.
    n = settings.partitions
    rocksdb = settings.rocksdb_options  # a dict per table: Faust pops keys from it
    customers = app.Table(
        "customers", partitions=n, key_type=bytes, value_type=bytes, options=rocksdb()
    )
    timer_index = app.Table(
        "timers", partitions=n, key_type=bytes, value_type=bytes, options=rocksdb()
    )
    install_web(app, customers, processor)
    outputs = Outputs(bootstrap)
    tables = Tables(customers, timer_index, outputs)

    def owned() -> list[int]:
        return [tp.partition for tp in app.consumer.assignment() if tp.topic == topics.touchpoints]

    @app.agent(source, name="rota.decide")
    async def decide_agent(stream: Any) -> None:
        phases = _Phases()
        pipeline = Pipeline(outputs, tables, app.consumer)
        async for events in batches(app, stream.channel, settings.batch_size, settings.batch_wait):
            phases.mark("receive")
            # Every owned partition, so that each fires its due timers now, not when
            # its tick gets through the other partitions' backlog.
            by_partition: dict[int, list[Any]] = {p: [] for p in owned()}
            for event in events:
                by_partition.setdefault(event.message.partition, []).append(event)
            now = clock.now()
            results: dict[int, BatchResult] = {}
            for partition, evs in by_partition.items():
                records = [
                    Incoming(
                        e.message.topic,
                        partition,
                        e.message.offset,
                        e.message.key,
                        e.message.value,
                        int(e.message.timestamp * 1000) if e.message.timestamp else None,
                    )
                    for e in evs
                ]
                store = tables.partition(partition)
                result = processor.process(
                    records,
                    store,
                    now=now,
                    defer_state=True,
                    previous=pipeline.previous(partition),
                )
                results[partition] = result
                for out in result.out:
                    outputs.send(out.topic, out.key, out.value)
            phases.mark("decide")
            await pipeline.submit(results, events)
            phases.mark("wait")
            for partition, result in results.items():
                if result.ticks:
                    _observe_sizes(customers, timer_index, partition)
            _observe_lag(app, by_partition)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode's signal typing
    async def on_rebalanced(sender: Any, *args: Any, **kwargs: Any) -> None:
        metrics.REBALANCES.inc()
        mine = owned()
        metrics.PARTITIONS_ASSIGNED.set(len(mine))
        labels_owned = {str(p) for p in mine}
        for gauge in (metrics.TIMERS_PENDING, metrics.STATE_CUSTOMERS, metrics.CONSUMER_LAG):
            for labels in list(gauge._metrics):  # forget partitions that moved away
                if labels[-1] not in labels_owned:
                    gauge.remove(*labels)

    @app.timer(interval=settings.tick_interval, on_leader=True)
    async def send_ticks() -> None:
        value = timers.encode_tick(clock.now())
        for partition in range(settings.partitions):
            await ticks.send(key=None, value=value, partition=partition)

    return app
