"""The customer inspector: what support sees of a customer, first from the core's state
alone, then over HTTP from a group of two real workers, where either worker answers for
every customer (requests are forwarded to the owner of the customer's partition)."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
import pytest
from confluent_kafka import Producer
from conftest import get_json, wait_for

from orchestrator import broker as brokers
from orchestrator import wire
from orchestrator.core.decide import decide
from orchestrator.inspector import OPENAPI, customer_view, journeys_view
from orchestrator.journey.catalog import Catalog
from orchestrator.kafka_security import producer_config
from orchestrator.records import CHANNELS, Context, Touchpoint, parse_time
from orchestrator.topics import ensure_topics

JOURNEY = """
id: onboarding
name: Onboarding
version: 1
entry:
  event: Signed Up
  reentry: never
steps:
  hello:
    type: action
    channels: [email, sms]
    template: welcome
    next: later
  later:
    type: wait
    duration: 3d
    next: tips
  tips:
    type: action
    channel: email
    template: tips
    next: done
  done:
    type: end
"""
T0 = parse_time("2026-03-02T08:00:00Z")


def _schema(name: str) -> dict[str, Any]:
    """A component schema of the OpenAPI document, resolvable on its own."""
    return {**OPENAPI["components"]["schemas"][name], "components": OPENAPI["components"]}


def _signed_up(customer: str, at: int, **traits: Any) -> Touchpoint:
    return Touchpoint(
        event_id=f"{customer}-signup",
        type="identify",
        name="Signed Up",
        channel="web",
        occurred_at=at,
        customer_id=customer,
        traits={"email": f"{customer}@example.com", "first_name": "Ann", **traits},
        context=Context(timezone="Europe/Paris"),
    )


def test_the_view_says_where_the_customer_is_and_why_they_got_each_message():
    catalog = Catalog.from_yaml(JOURNEY)
    d1 = decide(None, _signed_up("c1", T0), catalog, customer_id="c1")
    bounce = Touchpoint(
        event_id="b1",
        type="track",
        name="Email Bounced",
        channel="email",
        occurred_at=T0 + 1000,
        customer_id="c1",
        traits={"email_bounced": True},
    )
    d2 = decide(d1.state, bounce, catalog, customer_id="c1")

    view = customer_view(d2.state, catalog, partition=3)

    jsonschema.validate(view, _schema("Customer"))
    assert view["partition"] == 3
    (journey,) = view["journeys"]
    assert (journey["journey_id"], journey["step"], journey["step_type"]) == (
        "onboarding",
        "later",
        "wait",
    )
    assert journey["waiting_until"] == "2026-03-05T08:00:00.000Z"
    (sent,) = view["recent_actions"]
    assert (sent["channel"], sent["step"]) == ("email", "hello")
    assert sent["action_id"] == d1.actions[0].action_id
    assert sent["reason"] == d1.actions[0].reason
    assert view["consent"]["email"] == {"reachable": False, "unsubscribed": False, "bounced": True}
    assert view["consent"]["web"]["reachable"] is True
    assert view["identities"]["contact_points"] == {"email": "c1@example.com"}
    assert view["profile"]["timezone"] == "Europe/Paris"
    assert view["journey_history"]["onboarding"]["entries"] == 1


def test_the_journeys_view_adds_up_funnel_samples_per_journey():
    catalog = Catalog.from_yaml(JOURNEY)
    samples = [
        ({"journey": "onboarding", "kind": "entered", "step": ""}, 5.0),
        ({"journey": "onboarding", "kind": "step", "step": "hello"}, 5.0),
        ({"journey": "onboarding", "kind": "step", "step": "later"}, 4.0),
        ({"journey": "other", "kind": "entered", "step": ""}, 9.0),
    ]
    (view,) = journeys_view(catalog, samples)
    jsonschema.validate(view, _schema("Journey"))
    assert view["funnel"]["entered"] == 5
    assert view["funnel"]["steps"] == {"hello": 5, "later": 4}
    assert view["current"] is True and view["steps"] == ["hello", "later", "tips", "done"]


@pytest.mark.kafka
def test_either_worker_of_a_group_answers_for_every_customer(kafka, topics, tmp_path, start_worker):
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "onboarding.yaml").write_text(JOURNEY)
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    ports = [brokers.free_port(), brokers.free_port()]
    workers = [
        start_worker(journeys, name=f"w{i}", ROTA_WEB_PORT=str(port))
        for i, port in enumerate(ports)
    ]
    wait_for(
        lambda: (
            all(get_json(p, "/ready")[0] == 200 for p in ports)
            and sum(w.total("rota_partitions_assigned") for w in workers) == 4
            and all(w.total("rota_partitions_assigned") > 0 for w in workers)
        ),
        timeout=120,
        interval=0.5,
        what="both workers ready with two partitions each",
    )

    customers = [f"insp-{i}" for i in range(12)]
    producer = Producer(producer_config(kafka.bootstrap))
    now = int(time.time() * 1000)
    for c in customers:
        tp = _signed_up(c, now)
        producer.produce(topics.touchpoints, key=c.encode(), value=wire.encode_touchpoint(tp))
    assert producer.flush(10) == 0
    wait_for(
        lambda: sum(w.total("rota_events_consumed_total") for w in workers) >= len(customers),
        timeout=60,
        what="the sign-ups consumed",
    )

    partitions = set()
    for port in ports:  # each worker answers for all, half of them by forwarding
        for c in customers:
            status, body = wait_for(
                lambda c=c, port=port: (r := get_json(port, f"/v1/customers/{c}"))[0] == 200 and r,
                timeout=30,
                what=f"{c} from the worker on {port}",
            )
            jsonschema.validate(body, _schema("Customer"))
            assert body["customer_id"] == c
            assert [j["step"] for j in body["journeys"]] == ["later"]
            assert body["recent_actions"][0]["step"] == "hello"
            partitions.add(body["partition"])
    assert len(partitions) > 1  # the customers really are spread over both workers

    assert get_json(ports[0], "/v1/customers/nobody")[0] == 404
    status, spec = get_json(ports[1], "/openapi.json")
    assert (
        status == 200
        and spec["openapi"].startswith("3.")
        and "/v1/customers/{customer_id}" in spec["paths"]
    )
    entered = sum(get_json(p, "/v1/journeys")[1]["journeys"][0]["funnel"]["entered"] for p in ports)
    assert entered == len(customers)
    assert get_json(ports[0], "/live") == (200, {"live": True})
    for w in workers:  # served, never logged (non-negotiable: no PII in logs)
        assert "insp-" not in w.log_path.read_text()
