"""The webhook connector against a real local HTTP server, without Kafka.

``HttpEndpoint`` (a channel service stand-in) is also used by the runner tests.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connectors.base import ConfigError, DeliveryStatus
from connectors.webhook import WebhookConnector, retry_after_seconds, signature, verify
from orchestrator.records import NextBestAction

SECRET = b"s3cret"

# -- a channel service stand-in ------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str]]


@dataclass
class HttpEndpoint:
    """A real HTTP/1.1 (keep-alive) server on a free loopback port. ``reply`` decides
    each answer from the request; every request is kept in ``received``."""

    reply: Callable[[Received], Reply] = lambda _request: (204, {})
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _open: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with endpoint.lock:
                    endpoint.connections += 1
                    endpoint._open.append(self.connection)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Received(self.path, dict(self.headers.items()), body)
                with endpoint.lock:
                    endpoint.received.append(request)
                status, headers = endpoint.reply(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rota"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def bodies(self) -> list[dict[str, object]]:
        with self.lock:
            return [json.loads(r.body) for r in self.received]

    def drop_idle_connections(self) -> None:
        """Close open connections from the server side, as servers do with idle ones."""
        with self.lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.drop_idle_connections()
        self.server.shutdown()
        self.server.server_close()


def an_action(n: int = 1) -> NextBestAction:
    return NextBestAction(
        action_id=f"act-{n}",
        customer_id=f"cust-{n}",
        journey_id="welcome",
        journey_version=1,
        instance_id=f"inst-{n}",
        step="hello",
        channel="webhook",
        created_at=1_700_000_000_000,
        template="t1",
        payload={"first_name": "Ada", "vip": True},
        expires_at=1_700_000_600_000,
    )


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable", "says"),
    [
        ({}, "ROTA_WEBHOOK_URL", "is required"),
        ({"ROTA_WEBHOOK_URL": "  "}, "ROTA_WEBHOOK_URL", "is required"),
        ({"ROTA_WEBHOOK_URL": "ftp://example.com/x"}, "ROTA_WEBHOOK_URL", "not an absolute"),
        ({"ROTA_WEBHOOK_URL": "example.com/hook"}, "ROTA_WEBHOOK_URL", "not an absolute"),
        ({"ROTA_WEBHOOK_URL": "http://h:99999/"}, "ROTA_WEBHOOK_URL", "invalid port"),
        (
            {"ROTA_WEBHOOK_URL": "http://h/", "ROTA_WEBHOOK_TIMEOUT": "soon"},
            "ROTA_WEBHOOK_TIMEOUT",
            "not a number",
        ),
        (
            {"ROTA_WEBHOOK_URL": "http://h/", "ROTA_WEBHOOK_TIMEOUT": "0"},
            "ROTA_WEBHOOK_TIMEOUT",
            "must be > 0",
        ),
        (
            {"ROTA_WEBHOOK_URL": "http://h/", "ROTA_WEBHOOK_TIMEOUT": "nan"},
            "ROTA_WEBHOOK_TIMEOUT",
            "must be > 0",
        ),
        (
            {"ROTA_WEBHOOK_URL": "http://h/", "ROTA_WEBHOOK_CHANNELS": "CRM!"},
            "ROTA_WEBHOOK_CHANNELS",
            "channel names",
        ),
    ],
)
def test_bad_webhook_configuration_names_the_variable(env, variable, says):
    with pytest.raises(ConfigError) as caught:
        WebhookConnector.from_config(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert says in str(caught.value)


def test_webhook_configuration_is_read_from_the_environment():
    connector = WebhookConnector.from_config(
        {
            "ROTA_WEBHOOK_URL": "https://hooks.example.com/rota?tenant=7",
            "ROTA_WEBHOOK_TIMEOUT": "2.5",
            "ROTA_WEBHOOK_SECRET": "k",
            "ROTA_WEBHOOK_CHANNELS": "webhook, crm",
        }
    )
    assert connector.url == "https://hooks.example.com/rota?tenant=7"
    assert connector.timeout == 2.5
    assert connector.channels == ("webhook", "crm")
    _body, headers = connector.request(an_action())
    assert headers["X-Rota-Signature"].startswith("sha256=")


# -- signing and Retry-After ------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body_and_verify_checks_age():
    body = b'{"action_id":"a"}'
    sig = signature(SECRET, "1700000000", body)
    assert sig == "sha256=" + hmac.new(SECRET, b"1700000000." + body, "sha256").hexdigest()
    assert verify(SECRET, "1700000000", body, sig, now=1_700_000_100)
    assert not verify(SECRET, "1700000000", body, sig, now=1_700_001_000)  # too old
    assert not verify(SECRET, "1700000000", body + b" ", sig, now=1_700_000_000)
    assert not verify(SECRET, "not-a-time", body, sig)


def test_retry_after_accepts_seconds_and_http_dates_and_is_capped():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7", cap=60) == 7
    assert retry_after_seconds("3600", cap=60) == 60
    in_ten = format_datetime(now + timedelta(seconds=10), usegmt=True)
    assert retry_after_seconds(in_ten, cap=60, now=now.timestamp()) == pytest.approx(10)
    past = format_datetime(now - timedelta(seconds=10), usegmt=True)
    assert retry_after_seconds(past, cap=60, now=now.timestamp()) == 0
    assert retry_after_seconds("soon", cap=60) is None
    assert retry_after_seconds(None, cap=60) is None
    assert retry_after_seconds("-5", cap=60) is None


# -- talking HTTP ----------------------------------------------------------------------


@pytest.fixture
def endpoint() -> Iterator[HttpEndpoint]:
    ep = HttpEndpoint()
    yield ep
    ep.close()


def test_request_carries_the_action_json_idempotency_key_and_a_valid_signature(endpoint):
    connector = WebhookConnector(endpoint.url, secret=SECRET)
    result = connector.deliver(an_action())
    connector.close()

    assert result.status is DeliveryStatus.DELIVERED
    [request] = endpoint.received
    assert request.path == "/hooks/rota"
    assert json.loads(request.body) == {
        "action_id": "act-1",
        "customer_id": "cust-1",
        "journey_id": "welcome",
        "journey_version": 1,
        "instance_id": "inst-1",
        "step": "hello",
        "channel": "webhook",
        "created_at": "2023-11-14T22:13:20.000Z",
        "template": "t1",
        "payload": {"first_name": "Ada", "vip": True},
        "priority": 0,
        "expires_at": "2023-11-14T22:23:20.000Z",
        "reason": "",
    }
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "act-1"
    ts, sig = request.headers["X-Rota-Timestamp"], request.headers["X-Rota-Signature"]
    assert verify(SECRET, ts, request.body, sig)


def test_without_a_secret_no_signature_is_sent(endpoint):
    connector = WebhookConnector(endpoint.url)
    connector.deliver(an_action())
    assert "X-Rota-Signature" not in endpoint.received[0].headers


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retryable", "retry_after"),
    [
        (200, {"X-Message-Id": "msg-9"}, DeliveryStatus.DELIVERED, False, None),
        (202, {}, DeliveryStatus.DELIVERED, False, None),
        (503, {"Retry-After": "3"}, DeliveryStatus.FAILED, True, 3.0),
        (500, {}, DeliveryStatus.FAILED, True, None),
        (429, {"Retry-After": "86400"}, DeliveryStatus.FAILED, True, 60.0),
        (408, {}, DeliveryStatus.FAILED, True, None),
        (400, {}, DeliveryStatus.REJECTED, False, None),
        (404, {}, DeliveryStatus.REJECTED, False, None),
        (410, {}, DeliveryStatus.REJECTED, False, None),
        (301, {"Location": "http://elsewhere/"}, DeliveryStatus.REJECTED, False, None),
    ],
)
def test_http_status_decides_the_result(
    endpoint, status, headers, expected, retryable, retry_after
):
    endpoint.reply = lambda _r: (status, headers)
    connector = WebhookConnector(endpoint.url)
    result = connector.deliver(an_action())
    connector.close()
    assert (result.status, result.retryable, result.retry_after) == (
        expected,
        retryable,
        retry_after,
    )
    assert result.detail.startswith(f"HTTP {status}")
    if status == 200:
        assert result.provider_message_id == "msg-9"
    if status == 301:
        assert "ROTA_WEBHOOK_URL" in result.detail


def test_a_slow_endpoint_is_a_retryable_timeout(endpoint):
    release = threading.Event()

    def hang(_r: Received) -> Reply:
        release.wait(5)
        return 200, {}

    endpoint.reply = hang
    try:
        result = WebhookConnector(endpoint.url, timeout=0.2).deliver(an_action())
    finally:
        release.set()
    assert (result.status, result.retryable) == (DeliveryStatus.FAILED, True)
    assert result.detail == "no answer within 0.2s"


def test_nothing_listening_is_a_retryable_connection_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = WebhookConnector(f"http://127.0.0.1:{port}/").deliver(an_action())
    assert (result.status, result.retryable) == (DeliveryStatus.FAILED, True)
    assert "ConnectionRefusedError" in result.detail


def test_connections_are_kept_alive_between_deliveries(endpoint):
    connector = WebhookConnector(endpoint.url)
    results = [connector.deliver(an_action(n)) for n in range(5)]
    connector.close()
    assert all(r.status is DeliveryStatus.DELIVERED for r in results)
    assert len(endpoint.received) == 5
    assert endpoint.connections == 1


def test_a_keep_alive_connection_closed_by_the_server_is_replaced_transparently(endpoint):
    connector = WebhookConnector(endpoint.url)
    assert connector.deliver(an_action(1)).status is DeliveryStatus.DELIVERED
    endpoint.drop_idle_connections()
    assert connector.deliver(an_action(2)).status is DeliveryStatus.DELIVERED
    connector.close()
    assert [r.headers["Idempotency-Key"] for r in endpoint.received] == ["act-1", "act-2"]
    assert endpoint.connections == 2
