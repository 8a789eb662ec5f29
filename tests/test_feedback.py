"""``rota feedback serve``: provider callbacks become touchpoints of the right customer
and action. The mapping and signatures as pure functions; then the receiver over real
HTTP publishing to the real broker, with SendGrid's signed Event Webhook, Twilio's
signed status callbacks and the email's one-click unsubscribe.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from urllib.parse import urlencode

import orjson
import pytest
from conftest import wait_for
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_connector_runner import outcomes
from test_connector_sms_push import an_action as sms_action

from connectors import cli
from connectors.email import EmailConnector
from connectors.feedback import events, signatures
from connectors.feedback.server import FeedbackServer, FeedbackSettings, Publisher
from connectors.secrets import Secret
from connectors.sms import TwilioSmsConnector
from connectors.unsubscribe import Unsubscribe, make_token
from orchestrator.broker import free_port
from orchestrator.records import NextBestAction
from orchestrator.topics import Topics, ensure_topics

NOW = 1_700_000_100_000
TWILIO_TOKEN = "twilio-auth-token"
UNSUBSCRIBE_SECRET = b"unsubscribe-secret"


def sg_event(kind: str, n: int = 1, **extra: object) -> dict[str, object]:
    """An event as SendGrid's Event Webhook posts it, with Rota's unique arguments."""
    event: dict[str, object] = {
        "email": "ada@example.com",
        "timestamp": 1_700_000_050,
        "smtp-id": "<abc@shop.example>",
        "event": kind,
        "category": ["welcome"],
        "sg_event_id": f"sg-{kind}-{n}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "rota_action_id": f"act-{n}",
        "rota_customer_id": f"cust-{n}",
    }
    event.update(extra)
    return event


# -- mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("delivered", "Email Delivered"),
        ("open", "Email Opened"),
        ("click", "Email Link Clicked"),
        ("bounce", "Email Bounced"),
        ("dropped", "Email Dropped"),
        ("spamreport", "Email Marked Spam"),
        ("unsubscribe", "Unsubscribed"),
        ("group_unsubscribe", "Unsubscribed"),
        ("group_resubscribe", "Resubscribed"),
        ("deferred", "Email Deferred"),
        ("processed", "Email Processed"),
    ],
)
def test_sendgrid_events_become_touchpoints_of_the_action_and_customer(kind, name):
    mapped = events.sendgrid(sg_event(kind), received_at=NOW)
    tp = mapped.touchpoint
    assert tp is not None
    assert (tp.name, tp.type, tp.channel, tp.customer_id, tp.action_id) == (
        name,
        "track",
        "email",
        "cust-1",
        "act-1",
    )
    assert tp.occurred_at == 1_700_000_050_000
    assert tp.received_at == NOW
    assert tp.source == "feedback:sendgrid"
    assert tp.event_id == events.feedback_event_id("sendgrid", f"sg-{kind}-1")
    assert "ada@example.com" not in json.dumps(tp.to_json())  # the address stays out


def test_consent_and_reachability_ride_on_unsubscribes_and_hard_bounces():
    unsubscribed = events.sendgrid(sg_event("unsubscribe"), received_at=NOW).touchpoint
    assert unsubscribed is not None and unsubscribed.properties["channel"] == "email"
    hard = events.sendgrid(
        sg_event("bounce", type="bounce", status="5.1.1", reason="550 <ada@example.com> unknown"),
        received_at=NOW,
    ).touchpoint
    assert hard is not None
    assert (hard.properties["contact"], hard.properties["bounce"]) == ("email", "hard")
    assert dict(hard.traits) == {"email_bounced": True}
    assert hard.properties["reason"] == "550 <address> unknown"
    soft = events.sendgrid(sg_event("bounce", type="blocked"), received_at=NOW).touchpoint
    assert soft is not None and soft.properties["bounce"] == "soft" and not soft.traits


def test_clicked_links_lose_their_query_and_unknown_or_unattributed_events_are_skipped():
    click = events.sendgrid(
        sg_event("click", url="https://shop.example/cart?token=secret#x"), received_at=NOW
    ).touchpoint
    assert click is not None and click.properties["url"] == "https://shop.example/cart"
    assert events.sendgrid(sg_event("weird"), received_at=NOW).skipped == "ignored"
    anonymous = sg_event("open")
    del anonymous["rota_customer_id"]
    assert events.sendgrid(anonymous, received_at=NOW).skipped == "unattributed"


def test_a_retried_callback_maps_to_the_same_event_id():
    first = events.sendgrid(sg_event("open"), received_at=NOW).touchpoint
    again = events.sendgrid(sg_event("open"), received_at=NOW + 60_000).touchpoint
    assert first is not None and again is not None and first.event_id == again.event_id
    no_id = sg_event("open")
    del no_id["sg_event_id"]
    a = events.sendgrid(no_id, received_at=NOW).touchpoint
    b = events.sendgrid(dict(no_id), received_at=NOW + 1).touchpoint
    assert a is not None and b is not None and a.event_id == b.event_id


def test_twilio_status_callbacks_map_statuses_and_hard_bounce_errors():
    params = {
        "MessageSid": "SM1",
        "MessageStatus": "undelivered",
        "ErrorCode": "30005",
        "To": "+15551234567",
        "rota_action_id": "act-9",
        "rota_customer_id": "cust-9",
    }
    tp = events.twilio(params, received_at=NOW).touchpoint
    assert tp is not None
    assert (tp.name, tp.channel, tp.customer_id, tp.action_id) == (
        "SMS Undelivered",
        "sms",
        "cust-9",
        "act-9",
    )
    assert tp.properties["twilio_error"] == 30005 and tp.properties["bounce"] == "hard"
    assert dict(tp.traits) == {"phone_bounced": True}
    assert "+15551234567" not in json.dumps(tp.to_json())
    assert tp.event_id == events.feedback_event_id("twilio", "SM1\x1fundelivered")
    delivered = events.twilio({**params, "MessageStatus": "delivered"}, received_at=NOW)
    assert delivered.touchpoint is not None and delivered.touchpoint.name == "SMS Delivered"
    assert events.twilio({**params, "MessageStatus": "queued"}, received_at=NOW).skipped
    assert (
        events.twilio({"MessageSid": "SM1", "MessageStatus": "sent"}, received_at=NOW).skipped
        == "unattributed"
    )


# -- signatures ------------------------------------------------------------------------


def test_twilio_signature_matches_twilios_documented_example():
    # The example of Twilio's webhook security docs and its SDKs' tests.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signatures.twilio_signature("12345", url, params.items()) == (
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert signatures.verify_twilio("12345", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    port_url = url.replace(".com", ".com:443")
    assert signatures.verify_twilio(
        "12345", port_url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert not signatures.verify_twilio("12345", url, params.items(), "bogus=")
    assert not signatures.verify_twilio(
        "wrong", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )


class SendGridSigner:
    """What SendGrid does with its private key; ``public`` is what its UI shows."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str = "1700000100") -> dict[str, str]:
        sig = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            signatures.SENDGRID_SIGNATURE: base64.b64encode(sig).decode(),
            signatures.SENDGRID_TIMESTAMP: timestamp,
        }


def test_sendgrid_signature_is_ecdsa_over_timestamp_and_body():
    signer = SendGridSigner()
    key = signatures.sendgrid_public_key(signer.public)
    body = b'[{"event":"open"}]'
    h = signer.headers(body)
    sig, ts = h[signatures.SENDGRID_SIGNATURE], h[signatures.SENDGRID_TIMESTAMP]
    assert signatures.verify_sendgrid(key, body, sig, ts)
    assert not signatures.verify_sendgrid(key, body + b" ", sig, ts)
    assert not signatures.verify_sendgrid(key, body, sig, "1700000101")
    assert not signatures.verify_sendgrid(key, body, "not base64!", ts)
    assert not signatures.verify_sendgrid(key, body, None, ts)
    with pytest.raises(ValueError):
        signatures.sendgrid_public_key("bm90IGEga2V5")


# -- the receiver, over HTTP, publishing to Kafka -------------------------------------


@pytest.fixture
def signer() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture
def receiver(kafka, topics: Topics, signer) -> Iterator[FeedbackServer]:
    ensure_topics(kafka.bootstrap, [topics.touchpoints], partitions=2)
    settings = FeedbackSettings(
        host="127.0.0.1",
        port=0,
        sendgrid_key=signatures.sendgrid_public_key(signer.public),
        twilio_token=Secret(TWILIO_TOKEN),
        unsubscribe_secret=UNSUBSCRIBE_SECRET,
    )
    server = FeedbackServer(settings, Publisher(kafka.bootstrap, topics.touchpoints))
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(10)


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def sendgrid_unique_args(action: NextBestAction) -> dict[str, str]:
    """What the email connector (provider ``sendgrid``) attached to the message."""
    connector = EmailConnector(host="unused", sender="news@shop.example", provider="sendgrid")
    header = str(connector.message(action)["X-SMTPAPI"])
    return orjson.loads(header)["unique_args"]


@pytest.mark.kafka
def test_signed_sendgrid_events_are_published_tied_to_the_email_connectors_action(
    kafka, topics, receiver, signer
):
    sent = NextBestAction(
        action_id="act-77",
        customer_id="cust-77",
        journey_id="welcome",
        journey_version=1,
        instance_id="i",
        step="hello",
        channel="email",
        created_at=NOW,
        payload={"email": "ada@example.com"},
    )
    args = sendgrid_unique_args(sent)  # the round trip: connector -> SendGrid -> here
    batch = [
        {"event": "delivered", "sg_event_id": "e1", "timestamp": 1_700_000_001, **args},
        {"event": "open", "sg_event_id": "e2", "timestamp": 1_700_000_002, **args},
        {"event": "bounce", "type": "bounce", "sg_event_id": "e3", **args},
        {"event": "open", "sg_event_id": "e4"},  # sent by something else: no customer
        {"event": "brand_new_kind", "sg_event_id": "e5", **args},
    ]
    body = json.dumps(batch).encode()
    headers = {"Content-Type": "application/json", **signer.headers(body)}

    assert post(receiver.port, "/sendgrid/events", body, headers) == (200, "3 published")
    assert post(receiver.port, "/sendgrid/events", body, headers)[0] == 200  # a retry

    forged = body.replace(b"delivered", b"spamreport")
    assert post(receiver.port, "/sendgrid/events", forged, headers)[0] == 403
    assert post(receiver.port, "/sendgrid/events", b"{}", signer.headers(b"{}"))[0] == 400

    published = wait_for(
        lambda: [t for t in outcomes(kafka.bootstrap, topics) if t.source == "feedback:sendgrid"],
        timeout=20,
        what="feedback touchpoints",
    )
    assert sorted((t.name, t.customer_id, t.action_id) for t in published) == sorted(
        [
            ("Email Delivered", "cust-77", "act-77"),
            ("Email Opened", "cust-77", "act-77"),
            ("Email Bounced", "cust-77", "act-77"),
        ]
        * 2
    )
    assert len({t.event_id for t in published}) == 3  # the retry repeats the same ids


@pytest.mark.kafka
def test_signed_twilio_status_callbacks_for_the_sms_connectors_messages(kafka, topics, receiver):
    # The callback URL the sms connector gave Twilio, pointed at this receiver.
    sms = TwilioSmsConnector(
        account_sid="AC1",
        auth_token=Secret(TWILIO_TOKEN),
        sender="+15557654321",
        status_callback=f"http://127.0.0.1:{receiver.port}/twilio/status",
    )
    callback = sms.form(sms_action("sms", action_id="act-5", customer_id="cust-5"))[
        "StatusCallback"
    ]
    path = callback[len(f"http://127.0.0.1:{receiver.port}") :]
    form = {
        "MessageSid": "SM5",
        "MessageStatus": "delivered",
        "AccountSid": "AC1",
        "To": "+15551234567",
    }
    signature = signatures.twilio_signature(TWILIO_TOKEN, callback, form.items())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        signatures.TWILIO_SIGNATURE: signature,
    }
    body = urlencode(form).encode()

    assert post(receiver.port, path, body, headers) == (200, "1 published")
    tampered = urlencode({**form, "MessageStatus": "failed"}).encode()
    assert post(receiver.port, path, tampered, headers)[0] == 403
    other_customer = path.replace("cust-5", "cust-6")
    assert post(receiver.port, other_customer, body, headers)[0] == 403  # the URL is signed

    [tp] = wait_for(
        lambda: [t for t in outcomes(kafka.bootstrap, topics) if t.source == "feedback:twilio"],
        timeout=20,
        what="the SMS touchpoint",
    )
    assert (tp.name, tp.customer_id, tp.action_id) == ("SMS Delivered", "cust-5", "act-5")


@pytest.mark.kafka
def test_one_click_unsubscribe_publishes_unsubscribed_only_on_post(kafka, topics, receiver):
    token = make_token(UNSUBSCRIBE_SECRET, Unsubscribe("cust-3", "email", "act-3"))
    path = "/unsubscribe?" + urlencode({"token": token})

    status, page = get(receiver.port, path)  # a mail scanner following the link
    assert status == 200 and "<form method=post>" in page
    body = b"List-Unsubscribe=One-Click"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert post(receiver.port, path, body, form) == (200, "1 published")
    bad = "/unsubscribe?" + urlencode({"token": token[:-2] + "xx"})
    assert post(receiver.port, bad, body, form)[0] == 400

    [tp] = wait_for(
        lambda: [t for t in outcomes(kafka.bootstrap, topics) if t.name == "Unsubscribed"],
        timeout=20,
        what="the unsubscribe",
    )
    assert (tp.customer_id, tp.channel, tp.action_id) == ("cust-3", "email", "act-3")
    assert tp.properties["channel"] == "email"  # what the profile folds into consent
    assert get(receiver.port, "/healthz") == (200, "ok")
    assert "rota_feedback_events_total" in get(receiver.port, "/metrics")[1]


def test_no_2xx_before_kafka_acknowledged(signer):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: nothing is ever acknowledged
    server = FeedbackServer(
        FeedbackSettings(host="127.0.0.1", port=0),
        Publisher(dead, "rota.touchpoints", timeout=1.0),
    )
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        body = json.dumps([sg_event("open")]).encode()
        status, _ = post(server.port, "/sendgrid/events", body, {})
    finally:
        stop.set()
        thread.join(10)
    assert status == 503  # SendGrid retries: nothing is lost


def test_feedback_cli_refuses_bad_configuration(capsys):
    assert cli.serve_feedback({}) == 2
    assert "ROTA_KAFKA_BOOTSTRAP is required" in capsys.readouterr().err
    env = {"ROTA_KAFKA_BOOTSTRAP": "k:9092", "ROTA_SENDGRID_WEBHOOK_PUBLIC_KEY": "nope"}
    assert cli.serve_feedback(env) == 2
    assert "ROTA_SENDGRID_WEBHOOK_PUBLIC_KEY" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.feedback_main([])
