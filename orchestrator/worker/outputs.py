"""What the worker writes to Kafka - actions, journey transitions, forwarded touchpoints
and its tables' changelog records - through one confluent-kafka producer rather than
Faust's send buffer.

Faust's buffer costs a future and a coroutine per record; librdkafka batches in C.
The contract: ``flush`` returns only when every record sent so far is acknowledged by
Kafka, and the worker writes the state that says they happened only after it. A record
Kafka refuses (after librdkafka's own retries) stops the worker: its batch is not
acknowledged, so a restart replays it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from confluent_kafka import KafkaError, Message, Producer

from orchestrator.kafka_security import producer_config

log = logging.getLogger(__name__)

#: librdkafka's "no partition given": the configured partitioner picks it from the key.
BY_KEY = -1
#: Longest a flush may wait for acknowledgements before the worker gives up.
FLUSH_TIMEOUT_S = 120.0


class OutputError(RuntimeError):
    """Kafka did not take an output record: the batch must not count as done."""


class Outputs:
    def __init__(self, bootstrap: str, *, delivery_timeout_ms: int = 300_000) -> None:
        self._producer = Producer(
            {
                **producer_config(bootstrap),
                "client.id": "rota-worker-outputs",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": delivery_timeout_ms,
            }
        )
        self._failures: list[str] = []
        #: Topics whose acknowledged offsets are kept (changelogs), see ``take_acked``.
        self._tracked: set[str] = set()
        self._acked: dict[tuple[str, int], int] = {}

    def track(self, topic: str) -> None:
        """Remember the highest acknowledged offset per partition of ``topic``."""
        self._tracked.add(topic)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int = BY_KEY
    ) -> None:
        """Queue one record; ``None`` as value is a tombstone, ``partition`` overrides
        the key's (a changelog record goes to its table partition's)."""
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        topic = msg.topic() or ""
        if err is not None:
            self._failures.append(f"{topic}: {err}")
        elif topic in self._tracked:
            tp = (topic, msg.partition() or 0)
            offset = msg.offset() or 0
            if offset > self._acked.get(tp, -1):
                self._acked[tp] = offset

    async def flush(self) -> None:
        """Wait until Kafka acknowledged everything sent so far (at once if nothing)."""
        remaining = 0
        if len(self._producer):  # records queued, in flight, or their reports unserved
            remaining = await asyncio.to_thread(self._producer.flush, FLUSH_TIMEOUT_S)
        if remaining or self._failures:
            why = self._failures[:3] or [f"{remaining} record(s) unacknowledged"]
            raise OutputError(f"Kafka did not take the batch's outputs: {'; '.join(why)}")

    def take_acked(self) -> dict[tuple[str, int], int]:
        """The highest offset acknowledged per tracked partition since the last call."""
        acked, self._acked = self._acked, {}
        return acked


def stop_worker(exc: BaseException) -> None:
    """Stop the whole worker (not just the agent) after an output failure: the batch is
    unacknowledged, the state unwritten, so a restarted worker replays it."""
    log.critical("stopping the worker: %s", exc)
    os.kill(os.getpid(), signal.SIGTERM)
