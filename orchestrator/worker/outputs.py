"""What the worker emits - actions, journey transitions, forwarded touchpoints - through
one confluent-kafka producer rather than Faust's send buffer.

Faust's buffer costs a future and a coroutine per record; librdkafka batches in C.
The contract is unchanged: ``flush`` returns only when every record sent so far is
acknowledged by Kafka, and the worker writes the state that says they happened only
after it. A record Kafka refuses (after librdkafka's own retries) stops the worker:
its batch is not acknowledged, so a restart replays it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from confluent_kafka import KafkaError, Message, Producer

from orchestrator.kafka_security import producer_config

log = logging.getLogger(__name__)

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

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err}")

    async def flush(self) -> None:
        remaining = await asyncio.to_thread(self._producer.flush, FLUSH_TIMEOUT_S)
        if remaining or self._failures:
            why = self._failures[:3] or [f"{remaining} record(s) unacknowledged"]
            raise OutputError(f"Kafka did not take the batch's outputs: {'; '.join(why)}")


def stop_worker(exc: BaseException) -> None:
    """Stop the whole worker (not just the agent) after an output failure: the batch is
    unacknowledged, the state unwritten, so a restarted worker replays it."""
    log.critical("stopping the worker: %s", exc)
    os.kill(os.getpid(), signal.SIGTERM)
