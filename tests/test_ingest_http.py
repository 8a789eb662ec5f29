"""The Segment-compatible HTTP ingest against a real Kafka broker: the spec's documented
payloads, gzip, authentication, limits, malformed bodies, messageId de-duplication, and
the Segment and RudderStack Python SDKs pointed at it unchanged."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from confluent_kafka import Message
from prometheus_client import REGISTRY

from orchestrator.ingest.config import HttpIngestConfig
from orchestrator.ingest.http import RunningIngest, running
from orchestrator.ingest.writekeys import WriteKeys
from orchestrator.records import Touchpoint, parse_time
from orchestrator.topics import Topics, ensure_topics
from orchestrator.wire import decode_touchpoint
from tests.conftest import read_topic

pytestmark = pytest.mark.kafka

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "segment"
WEB_KEY = "test-web-key"
SERVER_KEY = "test-server-key"


@pytest.fixture
def ingest(kafka, topics: Topics) -> Iterator[RunningIngest]:
    ensure_topics(kafka.bootstrap, [topics.touchpoints], partitions=2)
    config = HttpIngestConfig(
        bootstrap=kafka.bootstrap,
        topics=topics,
        write_keys=WriteKeys.parse(f"{WEB_KEY}:web,{SERVER_KEY}:crm:backend"),
        host="127.0.0.1",
        port=0,
        ack_timeout=10.0,
    )
    with running(config) as server:
        yield server


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def post(
    server: RunningIngest,
    path: str,
    body: object,
    *,
    key: str | None = SERVER_KEY,
    compress: bool = False,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    data = raw if raw is not None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if compress:
        data = gzip.compress(data)
        hdrs["Content-Encoding"] = "gzip"
    auth = (key, "") if key is not None else None
    return requests.post(f"{server.url}{path}", data=data, headers=hdrs, auth=auth, timeout=30)


def touchpoints(kafka, topics: Topics, count: int) -> list[Message]:
    return read_topic(kafka.bootstrap, topics.touchpoints, until=lambda got: len(got) >= count)


def published_until(kafka, topics: Topics, server: RunningIngest) -> list[Touchpoint]:
    """Everything published before a sentinel event that is sent now: proves what was
    *not* published by earlier requests without waiting for an arbitrary time."""
    sentinel = str(uuid.uuid4())
    body = {"userId": "sentinel", "event": "Sentinel", "messageId": sentinel}
    assert post(server, "/v1/track", body).status_code == 200

    def seen(got: list[Message]) -> bool:
        return any(decode_touchpoint(m.value()).event_id == sentinel for m in got)

    msgs = read_topic(kafka.bootstrap, topics.touchpoints, until=seen)
    return [tp for tp in map(lambda m: decode_touchpoint(m.value()), msgs) if tp.name != "Sentinel"]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_spec_example_is_acknowledged_and_lands_as_an_avro_touchpoint(kafka, topics, ingest):
    for call in ("track", "identify", "page", "screen", "group", "alias", "batch"):
        r = post(ingest, f"/v1/{call}", example(call))
        assert (r.status_code, r.json()) == (200, {"success": True}), call
    msgs = touchpoints(kafka, topics, 10)
    got = sorted(
        ((m.key(), decode_touchpoint(m.value())) for m in msgs), key=lambda kv: kv[1].occurred_at
    )
    assert {k for k, _ in got} == {b"019mr8mf4r", b"971mj8mk7p"}  # keyed by customer
    names = sorted((tp.type, tp.name) for _, tp in got)
    assert names == sorted(
        [
            ("track", "Item Purchased"),
            ("identify", "Identified"),
            ("page", "Page Viewed"),
            ("screen", "Screen Viewed"),
            ("group", "Group Joined"),
            ("alias", "Aliased"),
            ("identify", "Identified"),
            ("identify", "Identified"),
            ("track", "Song Played"),
            ("track", "Song Played"),
        ]
    )
    for _, tp in got:
        assert tp.source == "backend" and tp.received_at is not None
        assert tp.occurred_at < parse_time("2013-01-01T00:00:00Z")  # the examples' times
    batch = [tp for _, tp in got if tp.name == "Song Played"]
    assert all(tp.channel == "app" for tp in batch)  # the batch context's phone


def test_gzip_batch_from_a_browser_sdk_with_the_write_key_in_the_body(kafka, topics, ingest):
    body = {
        "batch": [
            {
                "type": "page",
                "anonymousId": "anon-7",
                "messageId": "m-page-1",
                "properties": {"path": "/pricing"},
                "context": {"library": {"name": "analytics.js", "version": "2.0"}},
                "timestamp": "2024-05-01T12:00:00.000Z",
            }
        ],
        "sentAt": "2024-05-01T12:00:01.000Z",
        "writeKey": WEB_KEY,
    }
    r = post(ingest, "/v1/b", body, key=None, compress=True, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    (msg,) = touchpoints(kafka, topics, 1)
    tp = decode_touchpoint(msg.value())
    assert msg.key() == b"anon:anon-7"
    assert (tp.event_id, tp.name, tp.channel, tp.source) == (
        "m-page-1",
        "Page Viewed",
        "web",
        "http:web",
    )
    # sentAt - timestamp = 1 s: the event happened 1 s before the server received it.
    assert tp.received_at is not None and tp.occurred_at == tp.received_at - 1000


def test_wrong_missing_or_unreadable_write_keys_get_401_and_publish_nothing(kafka, topics, ingest):
    before = sample("rota_ingest_rejects_total", reason="unauthorized")
    body = example("track")
    assert post(ingest, "/v1/track", body, key="not-a-key").status_code == 401
    r = post(ingest, "/v1/track", body, key=None)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = post(ingest, "/v1/track", body, key=None, headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401
    r = post(ingest, "/v1/track", {**body, "writeKey": "guess"}, key=None)
    assert r.status_code == 401
    assert sample("rota_ingest_rejects_total", reason="unauthorized") - before == 4
    assert published_until(kafka, topics, ingest) == []


def test_oversize_calls_batches_and_batch_messages_get_400_and_publish_nothing(
    kafka, topics, ingest
):
    big = "x" * (33 * 1024)
    r = post(ingest, "/v1/track", {"userId": "u", "event": "E", "properties": {"blob": big}})
    assert (r.status_code, r.json()["code"]) == (400, "payload_too_large")
    small = {"type": "track", "userId": "u", "event": "E"}
    one_big = {"batch": [small, {**small, "properties": {"blob": big}}]}
    r = post(ingest, "/v1/batch", one_big)
    assert (r.status_code, r.json()["code"]) == (400, "payload_too_large")
    assert "batch[1]" in r.json()["message"]
    many = {"batch": [{**small, "properties": {"blob": "y" * 20_000}}] * 30}  # ~600 KB
    r = post(ingest, "/v1/batch", many)
    assert (r.status_code, r.json()["code"]) == (400, "payload_too_large")
    r = post(ingest, "/v1/batch", many, compress=True)  # small on the wire, not inflated
    assert (r.status_code, r.json()["code"]) == (400, "payload_too_large")
    assert published_until(kafka, topics, ingest) == []


def test_malformed_bodies_get_400_with_the_reason_and_a_bad_message_rejects_its_batch(
    kafka, topics, ingest
):
    before = sample("rota_ingest_rejects_total", reason="invalid_json")
    r = post(ingest, "/v1/track", None, raw=b'{"userId": "u", "event": ')
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    assert sample("rota_ingest_rejects_total", reason="invalid_json") - before == 1
    r = post(
        ingest, "/v1/track", None, raw=b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"}
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_encoding")
    r = post(ingest, "/v1/identify", {"traits": {"email": "a@example.com"}})
    assert r.status_code == 400 and "userId or anonymousId" in r.json()["message"]
    r = post(ingest, "/v1/track", ["not", "an", "object"])
    assert r.status_code == 400
    good = {"type": "track", "userId": "u1", "event": "Order Completed"}
    r = post(ingest, "/v1/batch", {"batch": [good, good, {"type": "track", "userId": "u2"}]})
    assert r.status_code == 400 and "batch[2]" in r.json()["message"]
    assert post(ingest, "/v1/nonsense", {}).status_code == 404
    assert published_until(kafka, topics, ingest) == []  # not half of the batch either


def test_a_retried_message_id_is_published_once_and_is_the_event_id(kafka, topics, ingest):
    body = {**example("order_completed"), "messageId": "retry-me-1"}
    before = sample("rota_ingest_duplicates_total")
    for _ in range(3):  # an SDK retrying a request whose 200 it did not see
        assert post(ingest, "/v1/track", body).status_code == 200
    twice = {
        "batch": [body, {**body, "messageId": "retry-me-2"}, {**body, "messageId": "retry-me-2"}]
    }
    assert post(ingest, "/v1/batch", twice).status_code == 200
    got = published_until(kafka, topics, ingest)
    assert sorted(tp.event_id for tp in got) == ["retry-me-1", "retry-me-2"]
    assert sample("rota_ingest_duplicates_total") - before == 4  # 2 retries + 2 in the batch


def test_segment_python_sdk_delivers_unchanged(kafka, topics, ingest):
    analytics = pytest.importorskip("segment.analytics")
    errors: list[Exception] = []
    client = analytics.Client(
        write_key=SERVER_KEY, host=ingest.url, sync_mode=True, gzip=True, on_error=errors.append
    )
    client.identify("cust-42", {"email": "ada@example.com", "plan": "pro"}, message_id="sdk-1")
    client.track(
        "cust-42",
        "Order Completed",
        {"order_id": "o-1", "total": 99.5, "products": [{"sku": "s1", "price": 99.5}]},
        message_id="sdk-2",
    )
    client.page("cust-42", category="Docs", name="Install", message_id="sdk-3")
    client.flush()
    assert errors == []
    got = {
        tp.event_id: tp
        for tp in map(lambda m: decode_touchpoint(m.value()), touchpoints(kafka, topics, 3))
    }
    assert got["sdk-1"].traits == {"email": "ada@example.com", "plan": "pro"}
    order = got["sdk-2"]
    assert (order.name, order.properties["total"], order.channel) == (
        "Order Completed",
        99.5,
        "crm",
    )
    assert json.loads(str(order.properties["products"])) == [{"price": 99.5, "sku": "s1"}]
    assert got["sdk-3"].properties == {"name": "Install", "category": "Docs"}


def test_rudderstack_python_sdk_delivers_unchanged(kafka, topics, ingest):
    rudder = pytest.importorskip("rudderstack.analytics.client")
    errors: list[Exception] = []
    client = rudder.Client(
        write_key=WEB_KEY, host=ingest.url, sync_mode=True, on_error=errors.append
    )
    client.track(
        user_id="cust-7", event="Product Viewed", properties={"sku": "s9"}, message_id="rs-1"
    )
    client.flush()
    assert errors == []
    (msg,) = touchpoints(kafka, topics, 1)
    tp = decode_touchpoint(msg.value())
    # RudderStack says channel "server" and library analytics-python: the key's channel.
    assert (tp.event_id, tp.name, tp.channel, tp.properties) == (
        "rs-1",
        "Product Viewed",
        "web",
        {"sku": "s9"},
    )


def test_metrics_and_health_are_served_beside_the_api(ingest):
    assert post(ingest, "/v1/track", example("track")).status_code == 200
    health = requests.get(f"{ingest.url}/health", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    text = requests.get(f"{ingest.url}/metrics", timeout=10).text
    assert 'rota_ingest_requests_total{endpoint="track",status="200"}' in text
    assert 'rota_ingest_events_total{type="track"}' in text
    assert "rota_ingest_request_seconds_bucket" in text
    assert SERVER_KEY not in text and "019mr8mf4r" not in text
    preflight = requests.options(f"{ingest.url}/v1/track", timeout=10)
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_basic_auth_header_is_what_sdks_send():
    # Guard the fixture helper against drifting from the SDKs' header form.
    token = base64.b64encode(f"{SERVER_KEY}:".encode()).decode()
    from orchestrator.ingest.http import _basic_username

    assert _basic_username(f"Basic {token}") == SERVER_KEY
    assert _basic_username("Bearer abc") == ""
    assert _basic_username(None) is None
