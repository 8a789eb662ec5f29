"""Live deploys on the real broker: a new version while customers are inside the old one,
then a pause - all without restarting the worker."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from conftest import read_topic, wait_for

from orchestrator import wire
from orchestrator.clock import Clock
from orchestrator.deployments import deploy_main, journeys_main
from orchestrator.records import CHANNELS, NextBestAction, Touchpoint
from orchestrator.topics import ensure_topics

pytestmark = pytest.mark.kafka

TEMPLATE = """
id: live_welcome
name: Live welcome
version: {version}
entry:
  event: Signed Up
steps:
  welcome:
    type: action
    channel: email
    template: welcome_v{version}
    next: later
  later:
    type: wait
    duration: 5h
    next: tips
  tips:
    type: action
    channel: push
    template: tips_v{version}
    next: done
  done:
    type: end
"""
SPEED = 3600.0


def _sign_up(producer: Producer, topic: str, customers: list[str], clock: Clock) -> None:
    for c in customers:
        tp = Touchpoint(
            event_id=f"{c}-signup",
            type="identify",
            name="Signed Up",
            channel="web",
            occurred_at=clock.now(),
            customer_id=c,
            traits={"push_consent": True, "email": f"{c}@example.com"},
        )
        producer.produce(topic, key=c.encode(), value=wire.encode_touchpoint(tp))
    assert producer.flush(10) == 0


def _actions(kafka, topic: str, want: int) -> list[NextBestAction]:
    msgs = read_topic(kafka.bootstrap, topic, until=lambda m: len(m) >= want, timeout=60)
    return [wire.decode_action(m.value()) for m in msgs]


def test_new_version_takes_new_entries_while_old_instances_finish_on_theirs(
    kafka, topics, tmp_path, start_worker, monkeypatch, capsys
):
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "live_v1.yaml").write_text(TEMPLATE.format(version=1))
    v2 = tmp_path / "live_v2.yaml"
    v2.write_text(TEMPLATE.format(version=2))
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    monkeypatch.setenv("ROTA_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("ROTA_TOPIC_PREFIX", topics.prefix)
    clock = Clock(SPEED, int(time.time() * 1000))
    worker = start_worker(
        journeys, ROTA_CLOCK_SPEED=str(SPEED), ROTA_CLOCK_ORIGIN_MS=str(clock.origin_ms)
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap})

    old = ["old-1", "old-2", "old-3"]
    _sign_up(producer, topics.touchpoints, old, clock)
    assert {a.template for a in _actions(kafka, topics.actions("email"), 3)} == {"welcome_v1"}

    assert deploy_main([str(v2)]) == 0
    wait_for(
        lambda: worker.total("rota_journey_reloads_total") >= 1,
        timeout=30,
        what="the worker loading version 2",
    )
    new = ["new-1", "new-2"]
    _sign_up(producer, topics.touchpoints, new, clock)

    email = _actions(kafka, topics.actions("email"), 5)
    assert {(a.customer_id, a.journey_version, a.template) for a in email} == {
        *((c, 1, "welcome_v1") for c in old),
        *((c, 2, "welcome_v2") for c in new),
    }
    push = _actions(kafka, topics.actions("push"), 5)  # the 5-hour waits, fired by timers
    assert {(a.customer_id, a.journey_version, a.template) for a in push} == {
        *((c, 1, "tips_v1") for c in old),
        *((c, 2, "tips_v2") for c in new),
    }

    assert journeys_main(["pause", "live_welcome"]) == 0
    wait_for(
        lambda: worker.total("rota_journey_reloads_total") >= 2,
        timeout=30,
        what="the worker pausing the journey",
    )
    consumed = worker.total("rota_events_consumed_total")
    _sign_up(producer, topics.touchpoints, ["paused-1"], clock)
    wait_for(
        lambda: worker.total("rota_events_consumed_total") > consumed,
        timeout=30,
        what="the sign-up during the pause to be processed",
    )
    assert worker.total("rota_actions_emitted_total") == 10  # nobody entered while paused

    capsys.readouterr()
    assert journeys_main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "live_welcome" in listing and "paused" in listing


def test_deploy_rejects_an_invalid_journey_and_deploys_nothing(
    kafka, topics, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("ROTA_KAFKA_BOOTSTRAP", kafka.bootstrap)
    monkeypatch.setenv("ROTA_TOPIC_PREFIX", topics.prefix)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEMPLATE.format(version=1).replace("next: later", "next: nowhere"))
    assert deploy_main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "bad.yaml" in err
    assert journeys_main(["list"]) == 0
    assert "nothing deployed" in capsys.readouterr().out
