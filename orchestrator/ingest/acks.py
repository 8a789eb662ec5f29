"""A Kafka producer whose sends an asyncio handler can await until Kafka acknowledged.

The HTTP ingest answers 200 only once every record of a request is acknowledged by
the cluster (``acks=all``): librdkafka's delivery callbacks run on a poll thread and
resolve one asyncio future per request. ``message.timeout.ms`` bounds how long a
record may wait for the cluster, so a dead broker turns into an error in bounded
time instead of a request hanging.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from orchestrator.kafka_security import producer_config

log = logging.getLogger(__name__)


class NotAcknowledged(RuntimeError):
    """Kafka did not acknowledge every record of a send; the sender should retry."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes


class _Pending:
    """One awaited send: counts down acknowledgements, keeps the first error."""

    __slots__ = ("error", "future", "lock", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: str | None = None
        self.lock = threading.Lock()

    def delivered(self, err: KafkaError | None, _msg: Message | None) -> None:  # poll thread
        self.settle(1, err.str() if err is not None else None)

    def settle(self, count: int, error: str | None) -> None:
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            self.remaining -= count
            done = self.remaining == 0
        if done:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self.future.done():
            return
        if self.error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(NotAcknowledged(self.error))


class AckingProducer:
    """``await send(records)`` returns once Kafka acknowledged all of them, or raises
    ``NotAcknowledged`` (after at most ``ack_timeout`` seconds)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        ack_timeout: float = 10.0,
        client_id: str = "rota-ingest",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.ack_timeout = ack_timeout
        self.fatal: str | None = None
        self._producer = Producer(
            {
                **producer_config(bootstrap),
                "client.id": client_id,
                "acks": "all",
                # Ordered, duplicate-free retries per partition; a customer's events
                # keep the order in which the ingest accepted them.
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": int(ack_timeout * 1000),
                "error_cb": self._on_error,
                **(config or {}),
            }
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="rota-ingest-acks", daemon=True)
        self._poller.start()

    async def send(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if self.fatal is not None:
            raise NotAcknowledged(f"producer failed: {self.fatal}")
        pending = _Pending(asyncio.get_running_loop(), len(records))
        sent = 0
        try:
            for r in records:
                self._producer.produce(r.topic, r.value, r.key, on_delivery=pending.delivered)
                sent += 1
        except Exception as exc:  # BufferError (queue full), KafkaException
            # Records already queued still get their callbacks; settle the rest now.
            pending.settle(len(records) - sent, f"producer refused the record: {exc}")
        # The callback always fires within message.timeout.ms; the margin only guards
        # against a bug leaving a request open forever.
        try:
            await asyncio.wait_for(asyncio.shield(pending.future), self.ack_timeout + 5.0)
        except TimeoutError:
            raise NotAcknowledged("no acknowledgement from Kafka in time") from None

    def close(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for records in flight, then stop the poll thread."""
        self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(timeout)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err.str()
            log.error("Kafka producer fatal error: %s", err.str())
        else:
            log.warning("Kafka producer: %s", err.str())
