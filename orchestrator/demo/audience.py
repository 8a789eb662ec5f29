"""The demo's customers answer what they are sent, so the loop visibly closes.

Reads the action topics and, for some actions, publishes the customer's reaction as a
touchpoint tied to the action: emails get opened and clicked, NPS surveys answered,
pushes opened. Deterministic for a given seed and action order.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from orchestrator import wire
from orchestrator.clock import Clock
from orchestrator.kafka_security import client_config, producer_config
from orchestrator.records import NextBestAction, Touchpoint
from orchestrator.topics import Topics


class DemoAudience:
    def __init__(self, *, clock: Clock, seed: int = 11) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self.reactions = 0

    def react(self, action: NextBestAction) -> list[Touchpoint]:
        roll = self.rng.random()

        def event(name: str, channel: str, **properties: float | str) -> Touchpoint:
            return Touchpoint(
                event_id=f"{action.action_id}:{name}",
                type="track",
                name=name,
                channel=channel,
                occurred_at=self.clock.now(),
                customer_id=action.customer_id,
                properties=properties,
                source="demo-audience",
                action_id=action.action_id,
            )

        if action.template == "nps_survey" and roll < 0.7:
            score = self.rng.choice((1, 3, 5, 6, 7, 8, 9, 10))
            return [event("NPS Submitted", "email", score=score)]
        if action.channel == "email" and roll < 0.35:
            opened = event("Email Opened", "email")
            if roll < 0.1:
                return [opened, event("Email Link Clicked", "email")]
            return [opened]
        if action.channel == "push" and roll < 0.25:
            return [event("Push Opened", "push")]
        return []

    def run(
        self, bootstrap: str, topics: Topics, channels: Sequence[str], stop: threading.Event
    ) -> None:
        consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": "rota-demo-audience",
                "enable.auto.commit": False,
            }
        )
        producer = Producer({**producer_config(bootstrap), "linger.ms": 5})
        try:
            assignment = []
            for channel in channels:
                name = topics.actions(channel)
                meta = consumer.list_topics(name, timeout=10).topics[name]
                assignment += [TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions]
            consumer.assign(assignment)
            while not stop.is_set():
                for msg in consumer.consume(500, timeout=0.2):
                    if msg.error() is not None:
                        continue
                    try:
                        action = wire.decode_action(msg.value() or b"")
                    except wire.DecodeError:
                        continue
                    for tp in self.react(action):
                        producer.produce(
                            topics.touchpoints,
                            key=tp.subject.encode(),
                            value=wire.encode_touchpoint(tp),
                        )
                        self.reactions += 1
                producer.poll(0)
        finally:
            producer.flush(10)
            consumer.close()
