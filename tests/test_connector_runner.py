"""The connector runner against a real Kafka broker and a real HTTP endpoint.

Each test publishes encoded actions to its own topics, runs a ``ConnectorRunner`` on a
thread until the expected effects are visible (HTTP requests received, outcome events
and dead letters on their topics, offsets committed), then stops it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from conftest import wait_for
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_connector_webhook import HttpEndpoint, Received, Reply

from connectors import cli
from connectors.base import Connector
from connectors.log import LogConnector, customer_ref
from connectors.outcomes import Outcome, outcome_event_id
from connectors.retry import RetryPolicy
from connectors.runner import ConnectorRunner
from connectors.webhook import WebhookConnector, verify
from orchestrator.records import NextBestAction, Touchpoint
from orchestrator.topics import Topics, ensure_topics
from orchestrator.wire import (
    DeadLetter,
    decode_deadletter,
    decode_touchpoint,
    encode_action,
)

pytestmark = pytest.mark.kafka

SECRET = b"test-secret"
MARKER = b"end-of-test-marker"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def endpoint() -> Iterator[HttpEndpoint]:
    ep = HttpEndpoint()
    yield ep
    ep.close()


# -- Kafka helpers -----------------------------------------------------------------------


def action(
    n: int, *, customer: str | None = None, channel: str = "webhook", **kw
) -> NextBestAction:
    fields: dict[str, object] = {
        "action_id": f"act-{n}",
        "customer_id": customer or f"cust-{n}",
        "journey_id": "welcome",
        "journey_version": 3,
        "instance_id": f"inst-{n}",
        "step": "send_welcome",
        "channel": channel,
        "created_at": 1_700_000_000_000 + n,
        "template": "welcome-v1",
        "payload": {"first_name": f"Ada{n}"},
        "reason": "entered welcome",
    }
    fields.update(kw)
    return NextBestAction(**fields)  # type: ignore[arg-type]


def publish(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], partition: int = -1
) -> dict[int, int]:
    """Publish in order; returns, per partition written, one past the last offset."""
    ends: dict[int, int] = {}

    def acked(err: object, msg: Message) -> None:
        assert err is None, err
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=partition, on_delivery=acked)
    assert producer.flush(10) == 0
    return ends


def publish_actions(bootstrap: str, topic: str, actions: list[NextBestAction]) -> dict[int, int]:
    return publish(bootstrap, topic, [(a.customer_id.encode(), encode_action(a)) for a in actions])


def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Everything on ``topic`` so far, every partition from the start (no group).

    A marker record is appended to each partition and the read stops at the markers:
    the embedded broker's high watermark is not reliable (it reports the base offset of
    the last record batch + 1), so "read up to the end offset" could stop short.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        markers = {p: publish(bootstrap, topic, [(None, MARKER)], p)[p] - 1 for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[bytes] = []
        deadline = time.monotonic() + 15
        while markers and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            if msg.offset() == markers.get(msg.partition()):
                del markers[msg.partition()]
            elif msg.value() != MARKER:
                out.append(msg.value())
        assert not markers, f"{topic}: partitions {sorted(markers)} not read to the end"
        return out
    finally:
        consumer.close()


def outcomes(bootstrap: str, topics: Topics) -> list[Touchpoint]:
    return [decode_touchpoint(v) for v in read_topic(bootstrap, topics.touchpoints)]


def dead_letters(bootstrap: str, topics: Topics) -> list[DeadLetter]:
    return [decode_deadletter(v) for v in read_topic(bootstrap, topics.deadletter)]


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on ``topic``, for partitions it committed on."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        return {
            tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10) if tp.offset >= 0
        }
    finally:
        consumer.close()


@contextlib.contextmanager
def running(runner: ConnectorRunner) -> Iterator[ConnectorRunner]:
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name="runner-under-test", daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "runner did not stop within 30 s"
    if failure:
        raise failure[0]


def make_runner(kafka, topics: Topics, connector: Connector, **kw) -> ConnectorRunner:
    ensure_topics(
        kafka.bootstrap,
        [topics.touchpoints, topics.deadletter, *map(topics.actions, connector.channels)],
        partitions=2,
    )
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("session_timeout_ms", 3000)  # the embedded broker joins in ~half of it
    return ConnectorRunner(connector, bootstrap=kafka.bootstrap, topics=topics, **kw)


def metric(name: str, **labels: str) -> float:
    """Current value of one sample in the default registry (0 when absent)."""
    for family in text_string_to_metric_families(generate_latest().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


# -- the behaviour ---------------------------------------------------------------------


def test_webhook_delivers_each_action_once_reports_outcomes_and_commits(kafka, topics, endpoint):
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url, secret=SECRET))
    actions = [action(n) for n in (1, 2, 3)]
    ends = publish_actions(kafka.bootstrap, topics.actions("webhook"), actions)

    with running(runner):
        wait_for(lambda: len(endpoint.received) >= 3, timeout=30, what="3 POSTs")
        wait_for(lambda: runner.stats.delivered == 3, timeout=10, what="3 deliveries")
        wait_for(
            lambda: committed(kafka.bootstrap, runner.group_id, topics.actions("webhook")) == ends,
            timeout=10,
            what="offsets committed to the end",
        )

    assert sorted(r.headers["Idempotency-Key"] for r in endpoint.received) == [
        "act-1",
        "act-2",
        "act-3",
    ]
    by_id = {b["action_id"]: b for b in endpoint.bodies()}
    for a in actions:
        assert by_id[a.action_id] == json.loads(json.dumps(a.to_json()))
    for r in endpoint.received:
        assert r.path == "/hooks/rota"
        assert r.headers["Content-Type"] == "application/json"
        assert verify(SECRET, r.headers["X-Rota-Timestamp"], r.body, r.headers["X-Rota-Signature"])
        assert not verify(
            b"wrong", r.headers["X-Rota-Timestamp"], r.body, r.headers["X-Rota-Signature"]
        )

    reported = outcomes(kafka.bootstrap, topics)
    assert sorted((t.action_id, t.customer_id, t.name) for t in reported) == [
        ("act-1", "cust-1", "Action Delivered"),
        ("act-2", "cust-2", "Action Delivered"),
        ("act-3", "cust-3", "Action Delivered"),
    ]
    first = next(t for t in reported if t.action_id == "act-1")
    assert first.event_id == outcome_event_id("act-1", Outcome.DELIVERED)
    assert first.type == "outcome"
    assert first.channel == "webhook"
    assert first.source == "connector:webhook"
    assert first.properties["journey_id"] == "welcome"
    assert first.properties["journey_version"] == 3
    assert first.properties["step"] == "send_welcome"
    assert first.properties["detail"] == "HTTP 204 No Content"
    assert dead_letters(kafka.bootstrap, topics) == []
    assert runner.stats.consumed == 3


def test_retryable_failure_is_retried_then_delivered(kafka, topics, endpoint):
    attempts: dict[str, int] = {}

    def flaky(request: Received) -> Reply:
        key = request.headers["Idempotency-Key"]
        attempts[key] = attempts.get(key, 0) + 1
        return (503, {"Retry-After": "0"}) if attempts[key] == 1 else (200, {"X-Message-Id": "m1"})

    endpoint.reply = flaky
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    publish_actions(kafka.bootstrap, topics.actions("webhook"), [action(1)])
    retries_before = metric("rota_connector_retries_total", connector="webhook")

    with running(runner):
        wait_for(lambda: runner.stats.delivered == 1, timeout=30, what="delivery after retry")

    assert attempts == {"act-1": 2}
    assert runner.stats.retries == 1
    assert metric("rota_connector_retries_total", connector="webhook") == retries_before + 1
    [outcome] = outcomes(kafka.bootstrap, topics)
    assert outcome.name == "Action Delivered"
    assert outcome.properties["attempts"] == 2
    assert outcome.properties["provider_message_id"] == "m1"


def test_rejected_action_is_dead_lettered_and_the_next_one_still_delivered(kafka, topics, endpoint):
    endpoint.reply = lambda r: (400, {}) if r.headers["Idempotency-Key"] == "act-1" else (200, {})
    # Same customer: the second action waits behind the first on the same partition.
    bad, good = action(1, customer="cust-x"), action(2, customer="cust-x")
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    ends = publish_actions(kafka.bootstrap, topics.actions("webhook"), [bad, good])

    with running(runner):
        wait_for(lambda: runner.stats.delivered == 1, timeout=30, what="the good action")
        wait_for(
            lambda: committed(kafka.bootstrap, runner.group_id, topics.actions("webhook")) == ends,
            timeout=10,
            what="offsets committed past the rejected action",
        )

    assert runner.stats.rejected == 1
    assert runner.stats.retries == 0  # a 400 is not worth repeating
    assert [r.headers["Idempotency-Key"] for r in endpoint.received] == ["act-1", "act-2"]
    names = {t.action_id: t.name for t in outcomes(kafka.bootstrap, topics)}
    assert names == {"act-1": "Action Rejected", "act-2": "Action Delivered"}
    [dead] = dead_letters(kafka.bootstrap, topics)
    assert dead.reason == "delivery_rejected"
    assert dead.component == "connector:webhook"
    assert dead.detail == "HTTP 400 Bad Request"
    assert dead.original_value == encode_action(bad)
    assert dead.original_key == b"cust-x"
    assert dead.source_topic == topics.actions("webhook")


def test_failure_after_the_last_attempt_is_reported_and_dead_lettered(kafka, topics, endpoint):
    endpoint.reply = lambda _r: (500, {})
    publish_actions(kafka.bootstrap, topics.actions("webhook"), [action(1)])
    failed_before = metric("rota_connector_deliveries_total", connector="webhook", result="failed")
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url))

    with running(runner):
        wait_for(lambda: runner.stats.failed == 1, timeout=30, what="final failure")
        wait_for(lambda: runner.stats.dead_lettered == 1, timeout=5, what="dead letter")

    assert len(endpoint.received) == FAST_RETRY.max_attempts
    [outcome] = outcomes(kafka.bootstrap, topics)
    assert (outcome.name, outcome.properties["attempts"]) == ("Action Failed", 3)
    [dead] = dead_letters(kafka.bootstrap, topics)
    assert (dead.reason, dead.detail) == ("delivery_failed", "HTTP 500 Internal Server Error")
    after = metric("rota_connector_deliveries_total", connector="webhook", result="failed")
    assert after == failed_before + 1


def test_undecodable_record_is_dead_lettered_with_its_bytes_and_the_next_delivered(
    kafka, topics, endpoint
):
    garbage = b"\x00not an action at all"
    topic = topics.actions("webhook")
    # Same key, so both land on one partition in this order.
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    ends = publish(
        kafka.bootstrap, topic, [(b"cust-1", garbage), (b"cust-1", encode_action(action(1)))]
    )
    undecodable_before = metric(
        "rota_connector_deadletter_total", connector="webhook", reason="undecodable"
    )

    with running(runner):
        wait_for(lambda: runner.stats.delivered == 1, timeout=30, what="the valid action")
        wait_for(
            lambda: committed(kafka.bootstrap, runner.group_id, topic) == ends,
            timeout=10,
            what="offsets committed past the garbage",
        )

    [dead] = dead_letters(kafka.bootstrap, topics)
    assert dead.reason == "undecodable"
    assert dead.original_value == garbage
    assert dead.original_key == b"cust-1"
    assert (dead.source_topic, dead.source_offset) == (topic, 0)
    assert "C3 01" in dead.detail
    assert [t.name for t in outcomes(kafka.bootstrap, topics)] == ["Action Delivered"]
    assert (
        metric("rota_connector_deadletter_total", connector="webhook", reason="undecodable")
        == undecodable_before + 1
    )


def test_the_same_action_published_twice_is_delivered_once(kafka, topics, endpoint):
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    same = action(7)
    publish_actions(kafka.bootstrap, topics.actions("webhook"), [same, same, action(8)])
    duplicates_before = metric(
        "rota_connector_deliveries_total", connector="webhook", result="duplicate"
    )

    with running(runner):
        wait_for(lambda: runner.stats.duplicates == 1, timeout=30, what="the duplicate")
        wait_for(lambda: runner.stats.delivered == 2, timeout=10, what="two deliveries")

    assert sorted(r.headers["Idempotency-Key"] for r in endpoint.received) == ["act-7", "act-8"]
    assert sorted(t.action_id for t in outcomes(kafka.bootstrap, topics)) == ["act-7", "act-8"]
    assert (
        metric("rota_connector_deliveries_total", connector="webhook", result="duplicate")
        == duplicates_before + 1
    )


def test_expired_action_is_not_delivered_and_reported_expired(kafka, topics, endpoint):
    now = int(time.time() * 1000)
    stale, fresh = action(1, expires_at=now - 60_000), action(2, expires_at=now + 3_600_000)
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    publish_actions(kafka.bootstrap, topics.actions("webhook"), [stale, fresh])

    with running(runner):
        wait_for(
            lambda: runner.stats.expired == 1 and runner.stats.delivered == 1,
            timeout=30,
            what="one expired, one delivered",
        )

    assert [r.headers["Idempotency-Key"] for r in endpoint.received] == ["act-2"]
    names = {t.action_id: t.name for t in outcomes(kafka.bootstrap, topics)}
    assert names == {"act-1": "Action Expired", "act-2": "Action Delivered"}


def test_consumed_and_delivered_metrics_count_every_action(kafka, topics):
    runner = make_runner(kafka, topics, LogConnector(("metrics_probe",)))
    publish_actions(
        kafka.bootstrap,
        topics.actions("metrics_probe"),
        [action(n, channel="metrics_probe") for n in range(5)],
    )
    consumed = metric("rota_connector_actions_consumed_total", connector="log")
    delivered = metric("rota_connector_deliveries_total", connector="log", result="delivered")
    observed = metric("rota_connector_delivery_seconds_count", connector="log")

    with running(runner):
        wait_for(lambda: runner.stats.delivered == 5, timeout=30, what="5 deliveries")

    assert metric("rota_connector_actions_consumed_total", connector="log") == consumed + 5
    assert (
        metric("rota_connector_deliveries_total", connector="log", result="delivered")
        == delivered + 5
    )
    assert metric("rota_connector_delivery_seconds_count", connector="log") == observed + 5
    assert metric("rota_connector_in_flight", connector="log") == 0
    exposition = generate_latest().decode()
    assert "cust-" not in exposition  # never a customer id as a label


def test_log_connector_serves_several_channels_without_logging_customer_ids(kafka, topics, caplog):
    caplog.set_level(logging.INFO, logger="connectors.log.deliveries")
    runner = make_runner(
        kafka, topics, LogConnector.from_config({"ROTA_LOG_CHANNELS": "email,sms"})
    )
    publish_actions(kafka.bootstrap, topics.actions("email"), [action(1, channel="email")])
    publish_actions(kafka.bootstrap, topics.actions("sms"), [action(2, channel="sms")])

    with running(runner):
        wait_for(lambda: runner.stats.delivered == 2, timeout=30, what="2 deliveries")

    channels = {t.action_id: t.channel for t in outcomes(kafka.bootstrap, topics)}
    assert channels == {"act-1": "email", "act-2": "sms"}
    lines = [r.getMessage() for r in caplog.records if r.name == "connectors.log.deliveries"]
    assert len(lines) == 2
    assert not any("cust-" in line for line in lines)
    assert any(customer_ref("cust-1") in line and "template=welcome-v1" in line for line in lines)


def test_cli_runs_named_connectors_until_stopped_and_prints_a_summary(kafka, topics, capsys):
    ensure_topics(
        kafka.bootstrap,
        [topics.touchpoints, topics.deadletter, topics.actions("log")],
        partitions=1,
    )
    publish_actions(kafka.bootstrap, topics.actions("log"), [action(1, channel="log")])
    env = {
        "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "ROTA_TOPIC_PREFIX": topics.prefix,
        "ROTA_SESSION_TIMEOUT_MS": "3000",
    }
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(cli.run_connectors(["log"], env, stop=stop)), daemon=True
    )
    thread.start()
    try:
        wait_for(lambda: outcomes(kafka.bootstrap, topics), timeout=30, what="an outcome")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result == [0]
    out = capsys.readouterr().out
    assert f"log <- {topics.actions('log')}" in out
    assert "connector log stopped: consumed=1 delivered=1" in out


def test_stopping_lets_the_delivery_in_progress_finish_and_commits_it(kafka, topics, endpoint):
    release = threading.Event()

    def slow(_r: Received) -> Reply:
        release.wait(10)
        return 200, {}

    endpoint.reply = slow
    runner = make_runner(kafka, topics, WebhookConnector(endpoint.url), drain_timeout=10)
    ends = publish_actions(kafka.bootstrap, topics.actions("webhook"), [action(1)])
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: endpoint.received, timeout=30, what="the request in progress")
        stop.set()
        release.set()
    finally:
        stop.set()
        release.set()
        thread.join(timeout=30)

    assert not thread.is_alive()
    assert (runner.stats.delivered, runner.stats.abandoned) == (1, 0)
    assert committed(kafka.bootstrap, runner.group_id, topics.actions("webhook")) == ends
    assert [t.name for t in outcomes(kafka.bootstrap, topics)] == ["Action Delivered"]


def test_an_action_waiting_to_retry_at_stop_is_left_uncommitted_and_delivered_after_restart(
    kafka, topics, endpoint
):
    endpoint.reply = lambda _r: (503, {})
    patient = RetryPolicy(max_attempts=5, base_delay=30, max_delay=30)
    first = make_runner(
        kafka, topics, WebhookConnector(endpoint.url), retry=patient, drain_timeout=0.2
    )
    ends = publish_actions(kafka.bootstrap, topics.actions("webhook"), [action(1)])

    with running(first):
        wait_for(lambda: endpoint.received, timeout=30, what="the first attempt")

    assert (first.stats.abandoned, first.stats.delivered, first.stats.failed) == (1, 0, 0)
    assert committed(kafka.bootstrap, first.group_id, topics.actions("webhook")) == {}
    assert outcomes(kafka.bootstrap, topics) == []

    endpoint.reply = lambda _r: (200, {})
    second = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    assert second.group_id == first.group_id
    with running(second):
        wait_for(lambda: second.stats.delivered == 1, timeout=30, what="delivery after restart")
        wait_for(
            lambda: committed(kafka.bootstrap, second.group_id, topics.actions("webhook")) == ends,
            timeout=10,
            what="the commit",
        )

    assert [r.headers["Idempotency-Key"] for r in endpoint.received] == ["act-1", "act-1"]
    assert [t.name for t in outcomes(kafka.bootstrap, topics)] == ["Action Delivered"]


def test_reading_pauses_while_max_in_flight_actions_are_unfinished(kafka, topics, endpoint):
    release = threading.Event()

    def held(_r: Received) -> Reply:
        release.wait(10)
        return 200, {}

    endpoint.reply = held
    runner = make_runner(
        kafka,
        topics,
        WebhookConnector(endpoint.url),
        max_in_flight=2,
        delivery_threads=2,
        pause_after=0.1,
    )
    publish_actions(kafka.bootstrap, topics.actions("webhook"), [action(n) for n in range(1, 6)])
    try:
        with running(runner):
            wait_for(lambda: runner.paused, timeout=30, what="the runner to pause")
            assert runner.stats.consumed == 2
            release.set()
            wait_for(lambda: runner.stats.delivered == 5, timeout=10, what="all 5 delivered")
            wait_for(lambda: not runner.paused, timeout=5, what="reading to resume")
    finally:
        release.set()
    assert sorted(r.headers["Idempotency-Key"] for r in endpoint.received) == [
        f"act-{n}" for n in range(1, 6)
    ]


def test_a_second_runner_in_the_group_takes_over_partitions_without_redelivery(
    kafka, topics, endpoint
):
    first = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    second = make_runner(kafka, topics, WebhookConnector(endpoint.url))
    topic = topics.actions("webhook")
    publish_actions(kafka.bootstrap, topic, [action(n) for n in range(20)])

    with running(first):
        wait_for(lambda: first.stats.delivered == 20, timeout=30, what="the first 20")
        with running(second):  # joining makes the group rebalance
            wait_for(
                lambda: len(first.assignment) == len(second.assignment) == 1,
                timeout=30,
                what="a partition each",
            )
            ends = publish_actions(kafka.bootstrap, topic, [action(n) for n in range(20, 40)])
            wait_for(
                lambda: first.stats.delivered + second.stats.delivered == 40,
                timeout=30,
                what="all 40 delivered",
            )
            wait_for(
                lambda: committed(kafka.bootstrap, first.group_id, topic) == ends,
                timeout=10,
                what="both partitions committed to the end",
            )
            assert second.stats.delivered > 0  # it got a partition

    keys = [r.headers["Idempotency-Key"] for r in endpoint.received]
    assert sorted(keys) == sorted(f"act-{n}" for n in range(40))  # each exactly once
