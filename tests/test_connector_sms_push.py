"""The SMS (Twilio Messages API) and push (FCM HTTP v1) connectors against local HTTP
servers that speak those documented formats: request shape, authentication, answers
including 429 with Retry-After, 5xx, provider error codes, timeouts and slow responses.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from connectors.base import ConfigError, DeliveryStatus
from connectors.push import FcmPushConnector
from connectors.sms import TwilioSmsConnector
from orchestrator.records import NextBestAction

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, dict[str, str], object]


@dataclass
class ProviderServer:
    """A real HTTP/1.1 server; ``answer`` turns each request into (status, headers,
    JSON body)."""

    answer: Callable[[Request], Answer]
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request("POST", self.path, dict(self.headers.items()), body)
                provider.requests.append(request)
                status, headers, payload = provider.answer(request)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def twilio_created(request: Request) -> Answer:
    form = dict(parse_qsl(request.body.decode()))
    return 201, {}, {"sid": "SM" + "0" * 32, "status": "queued", "to": form["To"]}


@pytest.fixture
def twilio() -> Iterator[ProviderServer]:
    server = ProviderServer(twilio_created)
    yield server
    server.close()


@pytest.fixture
def fcm() -> Iterator[ProviderServer]:
    server = ProviderServer(lambda _r: (200, {}, {"name": "projects/shop-app/messages/0:1"}))
    yield server
    server.close()


def an_action(channel: str, **kw: object) -> NextBestAction:
    fields: dict[str, object] = {
        "action_id": "act-1",
        "customer_id": "cust-1",
        "journey_id": "cart",
        "journey_version": 2,
        "instance_id": "inst-1",
        "step": "nudge",
        "channel": channel,
        "created_at": 1_700_000_000_000,
        "template": None,
        "offer": "FREESHIP",
        "payload": {
            "phone": "+15551234567",
            "push_token": "device-token-1",
            "body": "Your cart misses you, {{ first_name }}",
            "title": "Still thinking?",
            "first_name": "Ada",
        },
    }
    fields.update(kw)
    return NextBestAction(**fields)  # type: ignore[arg-type]


def sms_connector(server: ProviderServer, **env: str) -> TwilioSmsConnector:
    return TwilioSmsConnector.from_config(
        {
            "ROTA_TWILIO_ACCOUNT_SID": SID,
            "ROTA_TWILIO_AUTH_TOKEN": TOKEN,
            "ROTA_TWILIO_FROM": "+15557654321",
            "ROTA_TWILIO_BASE_URL": server.url,
            **env,
        }
    )


def push_connector(server: ProviderServer, **env: str) -> FcmPushConnector:
    return FcmPushConnector.from_config(
        {
            "ROTA_FCM_PROJECT": "shop-app",
            "ROTA_FCM_ACCESS_TOKEN": "ya29.token",
            "ROTA_FCM_BASE_URL": server.url,
            **env,
        }
    )


# -- SMS ---------------------------------------------------------------------------------


def test_sms_posts_the_twilio_messages_form_with_basic_auth_and_a_status_callback(twilio):
    connector = sms_connector(
        twilio, ROTA_TWILIO_STATUS_CALLBACK="https://feedback.shop.example/twilio/status"
    )
    result = connector.deliver(an_action("sms"))
    connector.close()

    assert result.status is DeliveryStatus.DELIVERED
    assert result.provider_message_id == "SM" + "0" * 32
    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    form = dict(parse_qsl(request.body.decode()))
    assert form["To"] == "+15551234567"
    assert form["From"] == "+15557654321"
    assert form["Body"] == "Your cart misses you, {{ first_name }}"  # payload text, not a template
    callback = urlsplit(form["StatusCallback"])
    assert (callback.netloc, callback.path) == ("feedback.shop.example", "/twilio/status")
    assert parse_qs(callback.query) == {"rota_action_id": ["act-1"], "rota_customer_id": ["cust-1"]}


def test_sms_body_comes_from_a_template_file_and_can_use_a_messaging_service(twilio, tmp_path):
    (tmp_path / "nudge.txt").write_text("Hi {{ first_name }}, use {{ offer }} today.\n")
    connector = TwilioSmsConnector.from_config(
        {
            "ROTA_TWILIO_ACCOUNT_SID": SID,
            "ROTA_TWILIO_AUTH_TOKEN": TOKEN,
            "ROTA_TWILIO_MESSAGING_SERVICE_SID": "MG123",
            "ROTA_TWILIO_BASE_URL": twilio.url,
            "ROTA_SMS_TEMPLATES": str(tmp_path),
        }
    )
    assert connector.deliver(an_action("sms", template="nudge")).status is DeliveryStatus.DELIVERED
    form = dict(parse_qsl(twilio.requests[0].body.decode()))
    assert form["Body"] == "Hi Ada, use FREESHIP today."
    assert form["MessagingServiceSid"] == "MG123" and "From" not in form
    assert "StatusCallback" not in form


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected", "retryable", "retry_after"),
    [
        (429, {"Retry-After": "2"}, {"code": 20429, "status": 429}, "failed", True, 2.0),
        (503, {}, {"code": 20503}, "failed", True, None),
        (401, {}, {"code": 20003, "message": "Authenticate"}, "failed", True, None),
        (400, {}, {"code": 21211, "message": "Invalid 'To' Phone Number"}, "bounced", False, None),
        (400, {}, {"code": 21610, "message": "unsubscribed recipient"}, "rejected", False, None),
        (400, {}, {"code": 21602, "message": "Message body is required"}, "rejected", False, None),
    ],
)
def test_twilio_answers_decide_the_result(
    twilio, status, headers, body, expected, retryable, retry_after
):
    twilio.answer = lambda _r: (status, headers, body)
    result = sms_connector(twilio).deliver(an_action("sms"))
    assert (result.status.value, result.retryable, result.retry_after) == (
        expected,
        retryable,
        retry_after,
    )
    if expected == "bounced":
        assert dict(result.properties) == {
            "contact": "phone",
            "bounce": "hard",
            "twilio_error": 21211,
        }
    if body.get("code") == 21610:
        assert result.properties["consent"] == "opted_out"


def test_sms_without_a_phone_number_is_rejected_without_a_request(twilio):
    result = sms_connector(twilio).deliver(an_action("sms", payload={"body": "x"}))
    assert result.status is DeliveryStatus.REJECTED and "'phone'" in result.detail
    result = sms_connector(twilio).deliver(an_action("sms", payload={"phone": "555-1234"}))
    assert result.status is DeliveryStatus.REJECTED and "E.164" in result.detail
    assert twilio.requests == []


def test_a_slow_twilio_is_a_retryable_timeout_and_a_slow_but_timely_one_delivers(twilio):
    release = threading.Event()

    def slow(request: Request) -> Answer:
        release.wait(float(request.headers.get("X-Test-Delay", "5")))
        return twilio_created(request)

    twilio.answer = slow
    try:
        result = sms_connector(twilio, ROTA_TWILIO_TIMEOUT="0.2").deliver(an_action("sms"))
    finally:
        release.set()
    assert (result.status, result.retryable) == (DeliveryStatus.FAILED, True)
    assert "within 0.2s" in result.detail
    release.clear()
    threading.Timer(0.3, release.set).start()  # answers after 0.3 s, within 2 s
    result = sms_connector(twilio, ROTA_TWILIO_TIMEOUT="2").deliver(an_action("sms"))
    assert result.status is DeliveryStatus.DELIVERED


def test_sms_configuration_errors_name_the_variable(tmp_path):
    with pytest.raises(ConfigError) as caught:
        TwilioSmsConnector.from_config({"ROTA_TWILIO_ACCOUNT_SID": SID})
    assert caught.value.variable == "ROTA_TWILIO_AUTH_TOKEN"
    with pytest.raises(ConfigError) as caught:
        TwilioSmsConnector.from_config(
            {"ROTA_TWILIO_ACCOUNT_SID": SID, "ROTA_TWILIO_AUTH_TOKEN": TOKEN}
        )
    assert caught.value.variable == "ROTA_TWILIO_FROM"
    with pytest.raises(ConfigError) as caught:
        TwilioSmsConnector.from_config(
            {
                "ROTA_TWILIO_ACCOUNT_SID": SID,
                "ROTA_TWILIO_AUTH_TOKEN_FILE": str(tmp_path / "missing"),
                "ROTA_TWILIO_FROM": "+1555",
            }
        )
    assert caught.value.variable == "ROTA_TWILIO_AUTH_TOKEN_FILE"


# -- push --------------------------------------------------------------------------------


def test_push_posts_an_fcm_v1_message_with_a_bearer_token(fcm, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("ya29.first\n")
    connector = FcmPushConnector.from_config(
        {
            "ROTA_FCM_PROJECT": "shop-app",
            "ROTA_FCM_ACCESS_TOKEN_FILE": str(token_file),
            "ROTA_FCM_BASE_URL": fcm.url,
        }
    )
    result = connector.deliver(an_action("push"))
    token_file.write_text("ya29.second-and-longer\n")  # the refresher rotated it
    connector.deliver(an_action("push"))
    connector.close()

    assert result.status is DeliveryStatus.DELIVERED
    assert result.provider_message_id == "projects/shop-app/messages/0:1"
    first, second = fcm.requests
    assert first.path == "/v1/projects/shop-app/messages:send"
    assert first.headers["Authorization"] == "Bearer ya29.first"
    assert second.headers["Authorization"] == "Bearer ya29.second-and-longer"
    assert json.loads(first.body) == {
        "message": {
            "token": "device-token-1",
            "notification": {
                "title": "Still thinking?",
                "body": "Your cart misses you, {{ first_name }}",
            },
            "data": {
                "rota_action_id": "act-1",
                "journey_id": "cart",
                "step": "nudge",
                "offer": "FREESHIP",
            },
        }
    }
    assert "cust-1" not in first.body.decode()  # the customer id never goes to the device


def fcm_error(status: int, code: str, fcm_code: str | None = None, message: str = "") -> object:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError"}]
    if fcm_code:
        details[0]["errorCode"] = fcm_code
    return {"error": {"code": status, "message": message, "status": code, "details": details}}


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected", "retryable"),
    [
        (404, {}, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), "bounced", False),
        (
            400,
            {},
            fcm_error(400, "INVALID_ARGUMENT", None, "The registration token is not valid"),
            "bounced",
            False,
        ),
        (400, {}, fcm_error(400, "INVALID_ARGUMENT", None, "Bad payload"), "rejected", False),
        (429, {"Retry-After": "1"}, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
         "failed", True),
        (503, {}, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE"), "failed", True),
        (401, {}, fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), "failed", True),
        (403, {}, fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), "rejected", False),
    ],
)  # fmt: skip
def test_fcm_answers_decide_the_result(fcm, status, headers, body, expected, retryable):
    fcm.answer = lambda _r: (status, headers, body)
    result = push_connector(fcm).deliver(an_action("push"))
    assert (result.status.value, result.retryable) == (expected, retryable)
    if expected == "bounced":
        assert result.properties["contact"] == "push_token"
    if status == 429:
        assert result.retry_after == 1.0


def test_push_without_a_device_token_is_rejected(fcm):
    result = push_connector(fcm).deliver(an_action("push", payload={"title": "x"}))
    assert result.status is DeliveryStatus.REJECTED and "'push_token'" in result.detail
    assert fcm.requests == []
