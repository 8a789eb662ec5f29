"""``rota ingest cloudevents``: CloudEvents from the ingest topic onto the touchpoint topic.

A consumer group reads ``ROTA_INGEST_CLOUDEVENTS_TOPIC`` (default
``<prefix>.ingest.cloudevents``) in batches; each record becomes a touchpoint
(``orchestrator.ingest.cloudevents``) or, if invalid, a dead letter with the reason,
the original key and value and the CloudEvent headers in ``detail``. The batch's
offsets are committed only after Kafka acknowledged everything it produced, so a crash
re-reads and re-converts (at least once; touchpoints keep the CloudEvent ``id`` as
``event_id``, which the worker de-duplicates). Nothing read is dropped.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from orchestrator import wire
from orchestrator.ingest import metrics
from orchestrator.ingest.cloudevents import CloudEventMapping, InvalidCloudEvent, from_kafka
from orchestrator.kafka_security import client_config, producer_config
from orchestrator.settings import Settings, SettingsError
from orchestrator.topics import Topics, ensure_topics

log = logging.getLogger(__name__)

COMPONENT = "ingest:cloudevents"


class BridgeError(RuntimeError):
    """Kafka did not acknowledge what a batch produced; the batch will be read again."""


@dataclass(frozen=True)
class BridgeConfig:
    bootstrap: str
    topics: Topics = field(default_factory=Topics)
    source_topic: str = ""
    """ROTA_INGEST_CLOUDEVENTS_TOPIC (default ``<prefix>.ingest.cloudevents``)."""
    group_id: str = "rota-ingest-cloudevents"
    """ROTA_INGEST_CLOUDEVENTS_GROUP: consumer group; bridges with the same one share."""
    mapping: CloudEventMapping = field(default_factory=CloudEventMapping)
    """ROTA_INGEST_CLOUDEVENTS_NAMES (type=Name,...), ROTA_INGEST_CLOUDEVENTS_CHANNEL."""
    batch_size: int = 500
    ack_timeout: float = 30.0
    session_timeout_ms: int = 6000
    partitions: int = 8

    @property
    def topic(self) -> str:
        return self.source_topic or f"{self.topics.prefix}.ingest.cloudevents"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BridgeConfig:
        env = os.environ if env is None else env
        settings = Settings.from_env(env)
        try:
            names = CloudEventMapping.parse_names(env.get("ROTA_INGEST_CLOUDEVENTS_NAMES", ""))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            bootstrap=settings.bootstrap(),
            topics=settings.topics,
            source_topic=env.get("ROTA_INGEST_CLOUDEVENTS_TOPIC", "").strip(),
            group_id=env.get("ROTA_INGEST_CLOUDEVENTS_GROUP", "").strip()
            or "rota-ingest-cloudevents",
            mapping=CloudEventMapping(
                names=names,
                default_channel=env.get("ROTA_INGEST_CLOUDEVENTS_CHANNEL", "").strip() or "crm",
            ),
            session_timeout_ms=settings.session_timeout_ms,
            partitions=settings.partitions,
        )


class CloudEventsBridge:
    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self._consumer = Consumer(
            {
                **client_config(config.bootstrap),
                "group.id": config.group_id,
                "client.id": "rota-ingest-cloudevents",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": config.session_timeout_ms,
            }
        )
        self._producer = Producer(
            {
                **producer_config(config.bootstrap),
                "client.id": "rota-ingest-cloudevents",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": int(config.ack_timeout * 1000),
            }
        )
        self._consumer.subscribe([config.topic])

    def step(self, timeout: float = 0.5) -> int:
        """Read, convert and publish one batch, then commit it. Returns records read."""
        msgs = [m for m in self._consumer.consume(self.config.batch_size, timeout) if _ok(m)]
        if not msgs:
            return 0
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err.str())

        now = int(time.time() * 1000)
        converted = rejected = 0
        for msg in msgs:
            try:
                tp = from_kafka(
                    msg.headers(), msg.value(), mapping=self.config.mapping, received_at=now
                )
            except InvalidCloudEvent as exc:
                rejected += 1
                metrics.CLOUDEVENT_REJECTS.labels(exc.reason).inc()
                self._producer.produce(
                    self.config.topics.deadletter,
                    wire.encode_deadletter(_dead_letter(msg, exc)),
                    msg.key(),
                    on_delivery=delivered,
                )
                continue
            converted += 1
            self._producer.produce(
                self.config.topics.touchpoints,
                wire.encode_touchpoint(tp),
                tp.subject.encode(),
                on_delivery=delivered,
            )
        left = self._producer.flush(self.config.ack_timeout)
        if left or failures:
            self._rewind(msgs)
            raise BridgeError(
                f"{left + len(failures)} record(s) not acknowledged: {failures[:1]}; "
                "the batch will be read again"
            )
        self._consumer.commit(offsets=_next_offsets(msgs), asynchronous=False)
        metrics.CLOUDEVENTS.labels("converted").inc(converted)
        metrics.CLOUDEVENTS.labels("deadlettered").inc(rejected)
        return len(msgs)

    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set; a batch Kafka did not take is retried."""
        while not stop.is_set():
            try:
                self.step()
            except BridgeError as exc:
                log.warning("%s", exc)
                stop.wait(1.0)

    def close(self) -> None:
        self._producer.flush(self.config.ack_timeout)
        self._consumer.close()

    def _rewind(self, msgs: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for m in msgs:
            tp_key = (m.topic() or "", m.partition() or 0)
            first[tp_key] = min(first.get(tp_key, m.offset() or 0), m.offset() or 0)
        for (topic, partition), offset in first.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))


def _ok(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return True
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", err.str())
    return False


def _next_offsets(msgs: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in msgs:
        key = (m.topic() or "", m.partition() or 0)
        last[key] = max(last.get(key, -1), m.offset() or 0)
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def _dead_letter(msg: Message, exc: InvalidCloudEvent) -> wire.DeadLetter:
    """The reason, plus the headers: in binary mode the attributes live there, and the
    dead-letter record keeps only the key and value bytes."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in pairs}
    detail = exc.detail
    if headers:
        detail += "; headers: " + orjson.dumps(headers, option=orjson.OPT_SORT_KEYS).decode()
    return wire.DeadLetter.now(
        reason=exc.reason,
        detail=detail,
        source_topic=msg.topic() or "",
        source_partition=msg.partition() or 0,
        source_offset=msg.offset() or 0,
        original_key=msg.key(),
        original_value=msg.value(),
        component=COMPONENT,
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rota ingest cloudevents",
        description="Convert CloudEvents on the ingest topic into touchpoints.",
    )
    p.add_argument("--metrics-port", type=int, default=0, help="serve /metrics (0 = off)")
    p.add_argument("--loglevel", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = BridgeConfig.from_env()
    except SettingsError as exc:
        print(f"rota ingest cloudevents: {exc}", file=sys.stderr)
        return 2
    try:
        ensure_topics(
            config.bootstrap,
            [config.topic, config.topics.touchpoints, config.topics.deadletter],
            partitions=config.partitions,
        )
    except (KafkaException, TimeoutError) as exc:
        reason = str(exc) or "no answer in time"
        print(
            f"rota ingest cloudevents: cannot reach Kafka at {config.bootstrap}: {reason}",
            file=sys.stderr,
        )
        return 1
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    bridge = CloudEventsBridge(config)
    log.info("bridging CloudEvents from %s to %s", config.topic, config.topics.touchpoints)
    try:
        bridge.run(stop)
    finally:
        bridge.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
