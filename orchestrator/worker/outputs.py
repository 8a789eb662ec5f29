"""What the worker writes to Kafka - actions, journey transitions, forwarded touchpoints
and its tables' changelog records - through one confluent-kafka producer rather than
Faust's send buffer.

Faust's buffer costs a future and a coroutine per record; librdkafka batches in C.
The contract: records are sent in epochs (``seal`` closes one, typically a batch's
outputs); ``acknowledged(epoch)`` returns only when each of its records is acknowledged
by Kafka, and the worker writes the state that says they happened only after it. A
record Kafka refuses (after librdkafka's own retries) stops the worker: its batch is not
acknowledged, so a restart replays it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from confluent_kafka import KafkaError, Message, Producer

from orchestrator.kafka_security import producer_config

log = logging.getLogger(__name__)

#: librdkafka's "no partition given": the configured partitioner picks it from the key.
BY_KEY = -1
#: Longest a flush may wait for acknowledgements before the worker gives up.
FLUSH_TIMEOUT_S = 120.0
#: Pause between polls for acknowledgements when none is waiting.
POLL_INTERVAL_S = 0.005


class OutputError(RuntimeError):
    """Kafka did not take an output record: the batch must not count as done."""


class Epoch:
    """The records sent between two ``Outputs.seal`` calls: one batch's outputs."""

    __slots__ = ("_outputs", "failures", "outstanding")

    def __init__(self, outputs: Outputs) -> None:
        self.outstanding = 0
        self.failures: list[str] = []
        self._outputs = outputs

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        self.outstanding -= 1
        topic = msg.topic() or ""
        if err is not None:
            self.failures.append(f"{topic}: {err}")
        elif topic in self._outputs._tracked:
            acked = self._outputs._acked
            tp = (topic, msg.partition() or 0)
            offset = msg.offset() or 0
            if offset > acked.get(tp, -1):
                acked[tp] = offset


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
        #: Topics whose acknowledged offsets are kept (changelogs), see ``take_acked``.
        self._tracked: set[str] = set()
        self._acked: dict[tuple[str, int], int] = {}
        self._epoch = Epoch(self)

    def track(self, topic: str) -> None:
        """Remember the highest acknowledged offset per partition of ``topic``."""
        self._tracked.add(topic)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int = BY_KEY
    ) -> None:
        """Queue one record; ``None`` as value is a tombstone, ``partition`` overrides
        the key's (a changelog record goes to its table partition's)."""
        epoch = self._epoch
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=epoch.delivered)
                epoch.outstanding += 1
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)

    def seal(self) -> Epoch:
        """The records sent since the last seal; later ones belong to the next."""
        epoch, self._epoch = self._epoch, Epoch(self)
        return epoch

    async def acknowledged(self, epoch: Epoch) -> None:
        """Wait until Kafka acknowledged every record of ``epoch``.

        Acknowledgements are collected by polling from the event loop, never by a
        blocking flush in a thread: librdkafka hands each one to Python, and a thread
        needing the GIL once per record while the loop decides the next batch took
        hundreds of milliseconds for a few thousand records (measured)."""
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        poll = self._producer.poll
        while epoch.outstanding > 0:
            if not poll(0):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(POLL_INTERVAL_S)
        if epoch.outstanding or epoch.failures:
            why = epoch.failures[:3] or [f"{epoch.outstanding} record(s) unacknowledged"]
            raise OutputError(f"Kafka did not take the batch's outputs: {'; '.join(why)}")

    async def flush(self) -> None:
        """Seal and wait: everything sent since the last seal is in Kafka."""
        await self.acknowledged(self.seal())

    def take_acked(self) -> dict[tuple[str, int], int]:
        """The highest offset acknowledged per tracked partition since the last call."""
        acked, self._acked = self._acked, {}
        return acked


def stop_worker(exc: BaseException) -> None:
    """Stop the whole worker (not just the agent) after an output failure: the batch is
    unacknowledged, the state unwritten, so a restarted worker replays it."""
    log.critical("stopping the worker: %s", exc)
    os.kill(os.getpid(), signal.SIGTERM)
