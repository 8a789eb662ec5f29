"""The kafka connector: hand actions to a topic a channel service owns.

For channel services that pull rather than expose an endpoint (a call-centre task queue,
a store's clienteling app): the runner still de-duplicates, rate-limits, retries and
reports outcomes, and the service reads a topic of its own, with its own retention and
ACLs, instead of Rota's internal action topic.

Each action is produced to ``ROTA_KAFKA_FORWARD_TOPIC``, keyed by customer id (so one
customer's actions stay in order on one partition), with a ``rota-action-id`` header
for the reader's de-duplication (delivery is at-least-once). The value is the action
as Rota publishes it - Avro single-object encoding (``schemas/``), byte-for-byte what
``rota.actions.<channel>`` carries when written by the current schema - or, with
``ROTA_KAFKA_FORWARD_FORMAT=json``, its JSON form (``NextBestAction.to_json``).
"Delivered" means the target cluster acknowledged the record (``acks=all``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Self

import orjson
from confluent_kafka import KafkaError, Message, Producer

from connectors import config
from connectors.base import DeliveryResult
from orchestrator import kafka_security
from orchestrator.records import NextBestAction
from orchestrator.wire import encode_action

FORMATS = ("avro", "json")


class KafkaForwardConnector:
    name = "kafka"

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        value_format: str = "avro",
        timeout: float = 30.0,
        channels: tuple[str, ...] = ("kafka",),
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if value_format not in FORMATS:
            raise ValueError(f"value_format must be one of {FORMATS}")
        self.topic = topic
        self.value_format = value_format
        self.timeout = timeout
        self.channels = channels
        self._producer = Producer(
            {
                **kafka_security.producer_config(bootstrap),
                "client.id": "rota-connector-kafka",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": int(timeout * 1000),
                **(producer_config or {}),
            }
        )

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """``ROTA_KAFKA_FORWARD_TOPIC`` (required), ``ROTA_KAFKA_FORWARD_BOOTSTRAP``
        (default: ``ROTA_KAFKA_BOOTSTRAP``), ``ROTA_KAFKA_FORWARD_FORMAT`` (avro | json),
        ``ROTA_KAFKA_FORWARD_CHANNELS`` (default ``kafka``)."""
        topic = config.required(env, "ROTA_KAFKA_FORWARD_TOPIC", "the channel service's topic")
        bootstrap = env.get("ROTA_KAFKA_FORWARD_BOOTSTRAP", "").strip() or config.required(
            env, "ROTA_KAFKA_BOOTSTRAP", "or ROTA_KAFKA_FORWARD_BOOTSTRAP"
        )
        return cls(
            bootstrap=bootstrap,
            topic=topic,
            value_format=config.choice(env, "ROTA_KAFKA_FORWARD_FORMAT", FORMATS),
            channels=config.channels(env, "ROTA_KAFKA_FORWARD_CHANNELS", ("kafka",)),
        )

    def value(self, action: NextBestAction) -> bytes:
        if self.value_format == "json":
            return orjson.dumps(action.to_json(), option=orjson.OPT_SORT_KEYS)
        return encode_action(action)

    def deliver(self, action: NextBestAction) -> DeliveryResult:
        acked = threading.Event()
        outcome: list[KafkaError | Message] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            outcome.append(error if error is not None else message)
            acked.set()

        try:
            self._producer.produce(
                self.topic,
                key=action.customer_id.encode(),
                value=self.value(action),
                headers=[("rota-action-id", action.action_id.encode())],
                on_delivery=on_delivery,
            )
        except BufferError:
            return DeliveryResult.failed("the producer's local queue is full")
        # Several delivery threads poll the same producer: a callback may run on any of
        # them, so each waits for its own event rather than for its own poll.
        while not acked.is_set():
            self._producer.poll(0.05)
        result = outcome[0]
        if isinstance(result, KafkaError):
            detail = f"producing to {self.topic} failed: {result.str()}"
            if result.retriable() or result.code() == KafkaError._MSG_TIMED_OUT:
                return DeliveryResult.failed(detail)
            return DeliveryResult.rejected(detail)
        return DeliveryResult.delivered(
            f"{self.topic}[{result.partition()}]@{result.offset()}",
            provider_message_id=f"{self.topic}:{result.partition()}:{result.offset()}",
        )

    def close(self) -> None:
        self._producer.flush(self.timeout)
