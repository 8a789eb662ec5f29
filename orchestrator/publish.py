"""The library for Python channel services: publish touchpoints, consume actions.

A channel service (a POS, an email provider's webhook receiver, a call-centre tool)
needs a dozen lines::

    from orchestrator.publish import Publisher

    with Publisher("kafka:9092") as rota:
        rota.publish_touchpoint(name="Order Completed", channel="store",
                                customer_id="c-42", properties={"total": 31.5})
        with rota.consume_actions("sms", group_id="sms-gateway") as actions:
            for action in actions:
                send_sms(action)                       # your delivery
                rota.publish_outcome(action, "Action Delivered")

Records are the project's Avro single-object encoding (``schemas/``), keyed as the
engine expects. Delivery is at least once both ways: a touchpoint re-sent with the
same ``event_id`` and an action seen twice are harmless (the engine de-duplicates
touchpoints by event id; de-duplicate actions by ``action_id``). An action's offset is
stored only after the caller is done with it (it asked for the next one, or left the
``with`` block without an exception), so a crash redelivers it instead of losing it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from orchestrator import kafka_security, wire
from orchestrator.kafka_security import client_config
from orchestrator.records import Context, NextBestAction, Scalar, Touchpoint
from orchestrator.topics import Topics

#: Namespace of outcome event ids (uuid5 of action id + outcome name): the same one
#: the connectors use (connectors/outcomes.py), so reports of one outcome de-duplicate.
OUTCOME_NAMESPACE = uuid.UUID("5f0b7a52-3c1e-4d52-9a7e-6a1f2b8c0d41")

#: Longest wait for a consumer-group assignment before ``idle_timeout`` applies anyway.
JOIN_GRACE = 30.0


class PublishError(RuntimeError):
    """Kafka did not acknowledge some touchpoints; the message says how many and why."""


class Publisher:
    """Publishes touchpoints to ``<prefix>.touchpoints`` and reads
    ``<prefix>.actions.<channel>``. Thread-safe for publishing; one
    ``consume_actions`` stream per thread."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str = "rota",
        *,
        source: str | None = None,
        timeout: float = 30.0,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = Topics(prefix)
        self.source = source
        self.timeout = timeout
        self._failures: list[str] = []
        self._producer = Producer(
            {
                **kafka_security.producer_config(bootstrap),
                "client.id": "rota-publisher",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": int(timeout * 1000),
                **(producer_config or {}),
            }
        )

    def publish_touchpoint(
        self,
        touchpoint: Touchpoint | None = None,
        /,
        *,
        name: str | None = None,
        channel: str | None = None,
        customer_id: str | None = None,
        anonymous_id: str | None = None,
        type: str = "track",
        properties: Mapping[str, Scalar] | None = None,
        traits: Mapping[str, Scalar] | None = None,
        context: Context | None = None,
        occurred_at: int | None = None,
        event_id: str | None = None,
        source: str | None = None,
        action_id: str | None = None,
    ) -> Touchpoint:
        """Queue one touchpoint (a ``Touchpoint``, or its fields as keywords) and return
        it. ``event_id`` defaults to a new UUID, ``occurred_at`` to now (ms), ``source``
        to the publisher's. Acknowledgement is checked by ``flush``/``close``."""
        if touchpoint is None:
            if not name or not channel:
                raise ValueError("publish_touchpoint needs name and channel (or a Touchpoint)")
            if not customer_id and not anonymous_id:
                raise ValueError("publish_touchpoint needs customer_id or anonymous_id")
            touchpoint = Touchpoint(
                event_id=event_id or str(uuid.uuid4()),
                type=type,
                name=name,
                channel=channel,
                occurred_at=int(time.time() * 1000) if occurred_at is None else occurred_at,
                customer_id=customer_id,
                anonymous_id=anonymous_id,
                properties=dict(properties or {}),
                traits=dict(traits or {}),
                context=context or Context(),
                source=source or self.source,
                action_id=action_id,
            )
        value = wire.encode_touchpoint(touchpoint)  # raises before anything is queued
        self._produce(self.topics.touchpoints, touchpoint.subject.encode(), value)
        return touchpoint

    def publish_outcome(
        self,
        action: NextBestAction,
        outcome: str,
        *,
        properties: Mapping[str, Scalar] | None = None,
        occurred_at: int | None = None,
    ) -> Touchpoint:
        """Report what happened to ``action`` ("Action Delivered", "Email Opened", ...):
        an ``outcome`` touchpoint whose event id is derived from (action id, outcome),
        so reporting the same outcome twice counts once."""
        return self.publish_touchpoint(
            event_id=str(uuid.uuid5(OUTCOME_NAMESPACE, f"{action.action_id}\x1f{outcome}")),
            type="outcome",
            name=outcome,
            channel=action.channel,
            customer_id=action.customer_id,
            properties={
                **(properties or {}),
                "journey_id": action.journey_id,
                "journey_version": action.journey_version,
                "step": action.step,
            },
            occurred_at=occurred_at,
            action_id=action.action_id,
        )

    def flush(self, timeout: float | None = None) -> None:
        """Wait until Kafka acknowledged everything queued; raise ``PublishError`` if
        it did not (those touchpoints should be published again)."""
        left = self._producer.flush(self.timeout if timeout is None else timeout)
        failures, self._failures = self._failures, []
        if left or failures:
            raise PublishError(
                f"{left} touchpoint(s) still unacknowledged, {len(failures)} failed"
                + (f": {failures[0]}" if failures else "")
            )

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def consume_actions(
        self,
        channel: str,
        group_id: str,
        *,
        idle_timeout: float | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> ActionStream:
        """The actions for ``channel``, as a context-managed iterator (see the module
        docstring for when an action counts as processed). ``idle_timeout`` ends the
        iteration after that many seconds without an action (None: never)."""
        return ActionStream(
            self,
            self.topics.actions(channel),
            group_id,
            idle_timeout=idle_timeout,
            consumer_config=consumer_config,
        )

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failures.append(err.str())


class ActionStream:
    """Iterates ``NextBestAction`` records of one action topic for one consumer group.

    Offsets are stored after processing and committed by librdkafka in the background
    and on ``close``. Actions that cannot be decoded are sent to the dead-letter topic
    (reason ``undecodable``) and skipped, never silently dropped.
    """

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        group_id: str,
        *,
        idle_timeout: float | None,
        consumer_config: Mapping[str, Any] | None,
    ) -> None:
        self.topic = topic
        self._publisher = publisher
        self._idle_timeout = idle_timeout
        self._pending: Message | None = None
        self._consumer = Consumer(
            {
                **client_config(publisher.bootstrap),
                "group.id": group_id,
                "client.id": "rota-action-consumer",
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                **(consumer_config or {}),
            }
        )
        self._assigned_at: float | None = None
        self._consumer.subscribe([topic], on_assign=self._on_assign)

    def __enter__(self) -> ActionStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._done()
        self.close()

    def __iter__(self) -> Iterator[NextBestAction]:
        last = time.monotonic()
        while True:
            self._done()  # the caller asked for the next one: the previous is processed
            msg = self._consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                if self._idle(last):
                    return
                continue
            last = time.monotonic()
            try:
                action = wire.decode_action(msg.value() or b"")
            except (wire.DecodeError, TypeError) as exc:
                self._dead_letter(msg, exc)
                self._consumer.store_offsets(message=msg)
                continue
            self._pending = msg
            yield action

    def _idle(self, last_message: float) -> bool:
        """Idle time counts from the later of the last action and the partition
        assignment: joining a group can take seconds, and is not idleness."""
        if self._idle_timeout is None:
            return False
        now = time.monotonic()
        if self._assigned_at is None:
            return now - last_message > self._idle_timeout + JOIN_GRACE
        return now - max(last_message, self._assigned_at) > self._idle_timeout

    def _on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self._assigned_at = time.monotonic()

    def close(self) -> None:
        """Commit what was processed and leave the group."""
        self._consumer.close()

    def _done(self) -> None:
        if self._pending is not None:
            self._consumer.store_offsets(message=self._pending)
            self._pending = None

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        dl = wire.DeadLetter.now(
            reason="undecodable",
            detail=str(exc),
            source_topic=msg.topic() or self.topic,
            source_partition=msg.partition() or 0,
            source_offset=msg.offset() or 0,
            original_key=msg.key(),
            original_value=msg.value(),
            component="publish:consume_actions",
        )
        p = self._publisher
        p._produce(p.topics.deadletter, msg.key(), wire.encode_deadletter(dl))
        p.flush()
