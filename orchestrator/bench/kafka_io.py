"""Publishing the workload and watching action topics, with plain confluent-kafka
clients - what a channel service would use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from orchestrator import wire
from orchestrator.bench.workload import Generated
from orchestrator.kafka_security import client_config, producer_config


def publish_burst(bootstrap: str, topic: str, records: Sequence[Generated]) -> float:
    """Publish pre-encoded records as fast as the client can; returns the seconds taken
    (all records acknowledged)."""
    producer = Producer(
        {
            **producer_config(bootstrap),
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    failed: list[object] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    started = time.monotonic()
    for rec in records:
        while True:
            try:
                producer.produce(topic, key=rec.key, value=rec.value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failed:
        raise RuntimeError(f"publishing to {topic}: {remaining} unsent, {len(failed)} failed")
    return time.monotonic() - started


#: The embedded broker's fetch costs in proportion to the record batches stored in the
#: partitions it reads, so the number of batches - one per partition per produce
#: request - sets how fast its CPU climbs under paced traffic. A worker at 2,400
#: touchpoints/s for 30 s (8 partitions), publication -> action p99: linger 10 ms
#: 888-957 ms (the broker's own p99 593-751), 20 ms 140 ms (71-73); 1 ms queued by
#: itself, no worker running, to p99 301 ms at 1,500/s.
PACED_LINGER_MS = 20


def publish_paced(
    bootstrap: str,
    topic: str,
    records: Sequence[Generated],
    rate: float,
    on_publish: Callable[[Generated, float], None],
    on_delivery: Callable[[Generated, int], None] | None = None,
) -> float:
    """Publish at ``rate`` records/s, calling ``on_publish(record, wall time)`` just
    before each record is handed to the client and ``on_delivery(record, partition)``
    once the broker took it; returns the rate achieved.

    The client batches for ``PACED_LINGER_MS``, as a channel service would; on the
    embedded broker fewer, larger batches keep its fetches cheap (see there)."""
    producer = Producer({**producer_config(bootstrap), "linger.ms": PACED_LINGER_MS})
    started = time.monotonic()
    for k, rec in enumerate(records):
        due = started + k / rate
        delay = due - time.monotonic()
        if delay > 0.0005:
            time.sleep(delay)
        on_publish(rec, time.time())
        report = None
        if on_delivery is not None:

            def report(err: object, msg: Message, rec: Generated = rec) -> None:
                if err is None:
                    on_delivery(rec, msg.partition() or 0)

        while True:
            try:
                producer.produce(topic, key=rec.key, value=rec.value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    elapsed = time.monotonic() - started
    producer.flush(60)
    return len(records) / elapsed if elapsed > 0 else 0.0


class ArrivalWatcher:
    """Reads topics from the beginning in a background thread and records, for each
    record, the wall time it became available to a consumer.

    ``keyed_by``: ``"trigger"`` keys action arrivals by the action's
    ``trigger_event_id``; ``"customer"`` by its customer id (timer actions have no
    trigger event); ``"event"`` keys touchpoint arrivals by their event id - the broker's
    own publication -> consumption time, the floor under the worker's.
    Partitions are assigned, not subscribed: no consumer-group join to wait for. With
    ``from_end``, only records published after the watcher was made are read; with
    ``partitions``, only the first that many of each topic (a sample: on the embedded
    broker a fetch costs in proportion to the record batches stored in the partitions it
    reads, so a watcher of every partition loads the broker it measures).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        keyed_by: str,
        from_end: bool = False,
        partitions: int | None = None,
    ) -> None:
        self.keyed_by = keyed_by
        self.arrivals: dict[str, float] = {}
        self.seen = 0
        self.last_arrival = time.monotonic()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": "rota-bench-actions",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "fetch.min.bytes": 1,
            }
        )
        parts = []
        #: The partition numbers read (of every topic): all, or the sample.
        self.partitions: set[int] = set()
        for topic in topics:
            meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
            for p in sorted(meta.partitions)[:partitions]:
                start = OFFSET_BEGINNING
                if from_end:
                    start = self._consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=10
                    )[1]
                parts.append(TopicPartition(topic, p, start))
                self.partitions.add(p)
        self._consumer.assign(parts)
        self._thread = threading.Thread(target=self._run, name="bench-arrivals", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        keyed_by = self.keyed_by
        while not self._stop.is_set():
            msgs = self._consumer.consume(1000, timeout=0.05)
            now = time.time()
            for msg in msgs:
                value = msg.value()
                if msg.error() is not None or value is None:
                    continue
                key: str | None
                if keyed_by == "event":
                    key = wire.decode_touchpoint(value).event_id
                else:
                    action = wire.decode_action(value)
                    key = action.trigger_event_id if keyed_by == "trigger" else action.customer_id
                if key is not None:
                    self.arrivals.setdefault(key, now)
                self.seen += 1
            if msgs:
                self.last_arrival = time.monotonic()

    def wait_idle(self, quiet: float = 1.0, timeout: float = 60.0) -> None:
        """Until no action arrived for ``quiet`` seconds (the backlog is read)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_arrival < quiet and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()
