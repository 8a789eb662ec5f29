"""The email connector against a real SMTP server (aiosmtpd): the message as received,
STARTTLS with a login, and what SMTP refusals become. Templates are real files."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_connector_runner import dead_letters, make_runner, outcomes, publish_actions, running

from connectors import templates
from connectors.base import ConfigError, DeliveryStatus
from connectors.email import EmailConnector, message_id, redact
from connectors.outcomes import Outcome, outcome_touchpoint
from connectors.unsubscribe import read_token
from orchestrator.broker import free_port
from orchestrator.records import NextBestAction

UNSUBSCRIBE_SECRET = "unsub-secret"


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpServer:
    """A real SMTP server on a free port. ``rcpt`` and ``data`` may return an SMTP reply
    to refuse; everything accepted lands in ``mails``."""

    tls: ssl.SSLContext | None = None
    users: dict[str, str] = field(default_factory=dict)
    rcpt: Callable[[str], str | None] = lambda _address: None
    data: Callable[[], str | None] = lambda: None
    mails: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler:
            async def handle_RCPT(self, _server, _session, envelope, address, _options):
                refusal = server.rcpt(address)
                if refusal:
                    return refusal
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, _server, _session, envelope):
                refusal = server.data()
                if refusal:
                    return refusal
                parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
                server.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), parsed))
                return "250 Message accepted for delivery"

        def authenticate(_server, _session, _envelope, _mechanism, auth_data):
            assert isinstance(auth_data, LoginPassword)
            user, password = auth_data.login.decode(), auth_data.password.decode()
            ok = server.users.get(user) == password
            if ok:
                server.logins.append(user)
            return AuthResult(success=ok, handled=False)  # False: the server answers 535

        self.port = free_port()
        kwargs: dict[str, object] = {}
        if self.tls is not None:
            kwargs.update(tls_context=self.tls, require_starttls=True)
        if self.users:
            kwargs.update(authenticator=authenticate, auth_require_tls=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.close()


def an_action(n: int = 1, **kw: object) -> NextBestAction:
    fields: dict[str, object] = {
        "action_id": f"act-{n}",
        "customer_id": f"cust-{n}",
        "journey_id": "welcome",
        "journey_version": 1,
        "instance_id": f"inst-{n}",
        "step": "hello",
        "channel": "email",
        "created_at": 1_700_000_000_000,
        "template": "welcome",
        "offer": "WELCOME10",
        "payload": {"email": "ada@example.com", "first_name": "Ada <b>&</b>", "vip": True},
    }
    fields.update(kw)
    return NextBestAction(**fields)  # type: ignore[arg-type]


@pytest.fixture
def template_dir(tmp_path: Path) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    (d / "welcome.subject.txt").write_text("Welcome, {{ first_name }}!\n")
    (d / "welcome.txt").write_text(
        "Hi {{ first_name }},\nuse {{ offer }}{% if vip %} (VIP){% endif %}.\n"
        "Unsubscribe: {{ unsubscribe_url }}\n"
    )
    (d / "welcome.html").write_text(
        '<p>Hi {{ first_name }}, use <b>{{ offer }}</b>.</p><a href="{{ unsubscribe_url }}">x</a>'
    )
    return d


def env_for(server: SmtpServer, **extra: str) -> dict[str, str]:
    return {
        "ROTA_SMTP_HOST": "127.0.0.1",
        "ROTA_SMTP_PORT": str(server.port),
        "ROTA_SMTP_SECURITY": "none",
        "ROTA_EMAIL_FROM": "Shop <news@shop.example>",
        **extra,
    }


# -- the message -------------------------------------------------------------------


def test_message_is_rendered_from_templates_and_received_with_its_headers(smtp, template_dir):
    connector = EmailConnector.from_config(
        env_for(
            smtp,
            ROTA_EMAIL_TEMPLATES=str(template_dir),
            ROTA_EMAIL_UNSUBSCRIBE_URL="https://feedback.shop.example/unsubscribe",
            ROTA_UNSUBSCRIBE_SECRET=UNSUBSCRIBE_SECRET,
            ROTA_EMAIL_UNSUBSCRIBE_MAILTO="unsubscribe@shop.example",
            ROTA_EMAIL_PROVIDER="sendgrid",
        )
    )
    result = connector.deliver(an_action())
    connector.close()

    assert result.status is DeliveryStatus.DELIVERED, result.detail
    [mail] = smtp.mails
    assert mail.sender == "news@shop.example"
    assert mail.recipients == ["ada@example.com"]
    msg = mail.message
    assert msg["To"] == "ada@example.com"
    assert msg["From"] == "Shop <news@shop.example>"
    assert msg["Subject"] == "Welcome, Ada <b>&</b>!"  # plain text: not escaped
    assert msg["Message-ID"] == message_id("act-1", "shop.example")
    assert result.provider_message_id == msg["Message-ID"]
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    assert "Hi Ada <b>&</b>,\nuse WELCOME10 (VIP)." in text
    assert "Hi Ada &lt;b&gt;&amp;&lt;/b&gt;, use <b>WELCOME10</b>." in html  # autoescaped

    unsubscribe = msg["List-Unsubscribe"]
    one_click = unsubscribe.split(",")[0].strip().strip("<>")
    assert one_click.startswith("https://feedback.shop.example/unsubscribe?token=")
    assert "<mailto:unsubscribe@shop.example?subject=unsubscribe>" in unsubscribe
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"Unsubscribe: {one_click}" in text
    token = one_click.split("token=", 1)[1]
    signed = read_token(UNSUBSCRIBE_SECRET.encode(), token)
    assert (signed.customer_id, signed.channel, signed.action_id) == ("cust-1", "email", "act-1")
    assert '"rota_action_id":"act-1"' in msg["X-SMTPAPI"]
    assert '"rota_customer_id":"cust-1"' in msg["X-SMTPAPI"]


def test_the_built_in_template_works_without_any_files(smtp):
    connector = EmailConnector.from_config(env_for(smtp))
    action = an_action(template=None, payload={"email": "bob@example.com"})
    assert connector.deliver(action).status is DeliveryStatus.DELIVERED
    connector.close()
    msg = smtp.mails[0].message
    assert msg["Subject"] == "A message for you"
    assert "Hello there," in msg.get_body(("plain",)).get_content()
    assert "WELCOME10" in msg.get_body(("html",)).get_content()
    assert "List-Unsubscribe" not in msg and "X-SMTPAPI" not in msg


@pytest.mark.parametrize(
    ("payload", "template", "says"),
    [
        ({}, "welcome", "payload has no 'email'"),
        ({"email": "not an address"}, "welcome", "not a valid address"),
        ({"email": "a@example.com", "first_name": "A"}, "missing", "no template 'missing'"),
        ({"email": "a@example.com"}, "welcome", "'first_name' is undefined"),
    ],
)
def test_an_action_that_cannot_become_a_message_is_rejected_with_the_reason(
    smtp, template_dir, payload, template, says
):
    connector = EmailConnector.from_config(env_for(smtp, ROTA_EMAIL_TEMPLATES=str(template_dir)))
    result = connector.deliver(an_action(payload=payload, template=template))
    assert result.status is DeliveryStatus.REJECTED
    assert says in result.detail
    assert smtp.mails == []


def test_templates_are_sandboxed(smtp, tmp_path):
    (tmp_path / "evil.subject.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    (tmp_path / "evil.txt").write_text("x")
    connector = EmailConnector.from_config(env_for(smtp, ROTA_EMAIL_TEMPLATES=str(tmp_path)))
    result = connector.deliver(an_action(template="evil"))
    assert result.status is DeliveryStatus.REJECTED
    assert "unsafe" in result.detail or "__class__" in result.detail
    assert smtp.mails == []


def test_a_template_syntax_error_stops_the_start_naming_file_and_line(tmp_path):
    (tmp_path / "broken.subject.txt").write_text("ok")
    (tmp_path / "broken.html").write_text("<p>\n{% if x %}never closed\n")
    with pytest.raises(ConfigError) as caught:
        EmailConnector.from_config(
            {
                "ROTA_SMTP_HOST": "h",
                "ROTA_EMAIL_FROM": "a@b.example",
                "ROTA_EMAIL_TEMPLATES": str(tmp_path),
            }
        )
    assert caught.value.variable == "ROTA_EMAIL_TEMPLATES"
    assert "broken.html, line" in str(caught.value)


def test_template_file_names_split_on_the_longest_part():
    found = templates.Templates(None, ("subject.txt", "txt", "html"), {"txt": "x"})
    assert found._split("welcome.subject.txt") == ("welcome", "subject.txt")
    assert found._split("welcome.txt") == ("welcome", "txt")
    assert found._split("notes.md") == ("notes.md", None)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ROTA_EMAIL_FROM": "a@b.example"}, "ROTA_SMTP_HOST"),
        ({"ROTA_SMTP_HOST": "h"}, "ROTA_EMAIL_FROM"),
        ({"ROTA_SMTP_HOST": "h", "ROTA_EMAIL_FROM": "nobody"}, "ROTA_EMAIL_FROM"),
        (
            {"ROTA_SMTP_HOST": "h", "ROTA_EMAIL_FROM": "a@b.example", "ROTA_SMTP_USER": "u"},
            "ROTA_SMTP_PASSWORD",
        ),
        (
            {
                "ROTA_SMTP_HOST": "h",
                "ROTA_EMAIL_FROM": "a@b.example",
                "ROTA_SMTP_USER": "u",
                "ROTA_SMTP_PASSWORD": "p",
                "ROTA_SMTP_SECURITY": "none",
            },
            "ROTA_SMTP_SECURITY",
        ),
        (
            {
                "ROTA_SMTP_HOST": "h",
                "ROTA_EMAIL_FROM": "a@b.example",
                "ROTA_EMAIL_UNSUBSCRIBE_URL": "https://x.example/u",
            },
            "ROTA_UNSUBSCRIBE_SECRET",
        ),
        (
            {"ROTA_SMTP_HOST": "h", "ROTA_EMAIL_FROM": "a@b.example", "ROTA_SMTP_PORT": "x"},
            "ROTA_SMTP_PORT",
        ),
        (
            {
                "ROTA_SMTP_HOST": "h",
                "ROTA_EMAIL_FROM": "a@b.example",
                "ROTA_EMAIL_TEMPLATES": "/nonexistent",
            },
            "ROTA_EMAIL_TEMPLATES",
        ),
    ],
)
def test_bad_email_configuration_names_the_variable(env, variable):
    with pytest.raises(ConfigError) as caught:
        EmailConnector.from_config(env)
    assert caught.value.variable == variable


# -- STARTTLS and login --------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate for 127.0.0.1, and the file a client must trust for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rota test smtp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


def test_starttls_and_login_with_a_password_from_a_file(tmp_path):
    context, ca_file = self_signed(tmp_path)
    server = SmtpServer(tls=context, users={"mailer": "pa55"})
    password_file = tmp_path / "password"
    password_file.write_text("pa55\n")
    try:
        connector = EmailConnector.from_config(
            {
                **env_for(server),
                "ROTA_SMTP_SECURITY": "starttls",
                "ROTA_SMTP_CA_FILE": str(ca_file),
                "ROTA_SMTP_USER": "mailer",
                "ROTA_SMTP_PASSWORD_FILE": str(password_file),
            }
        )
        results = [connector.deliver(an_action(n, template=None)) for n in (1, 2)]
        connector.close()
    finally:
        server.close()
    assert [r.status for r in results] == [DeliveryStatus.DELIVERED] * 2
    assert len(server.mails) == 2
    assert server.logins == ["mailer"]  # one connection, one login, two messages
    assert "pa55" not in repr(connector.__dict__)


def test_a_server_without_starttls_is_a_retryable_failure_not_a_clear_text_send(smtp):
    connector = EmailConnector.from_config({**env_for(smtp), "ROTA_SMTP_SECURITY": "starttls"})
    result = connector.deliver(an_action(template=None))
    assert (result.status, result.retryable) == (DeliveryStatus.FAILED, True)
    assert "does not offer STARTTLS" in result.detail
    assert smtp.mails == []


def test_a_wrong_password_is_a_retryable_failure(tmp_path):
    context, ca_file = self_signed(tmp_path)
    server = SmtpServer(tls=context, users={"mailer": "right"})
    try:
        connector = EmailConnector.from_config(
            {
                **env_for(server),
                "ROTA_SMTP_SECURITY": "starttls",
                "ROTA_SMTP_CA_FILE": str(ca_file),
                "ROTA_SMTP_USER": "mailer",
                "ROTA_SMTP_PASSWORD": "wrong",
            }
        )
        result = connector.deliver(an_action(template=None))
    finally:
        server.close()
    assert (result.status, result.retryable) == (DeliveryStatus.FAILED, True)
    assert "login refused" in result.detail


# -- refusals and bounces ------------------------------------------------------------


def test_unknown_recipient_is_a_hard_bounce_that_marks_the_address(smtp):
    smtp.rcpt = lambda address: f"550 5.1.1 <{address}>: Recipient address rejected"
    connector = EmailConnector.from_config(env_for(smtp))
    action = an_action(template=None)
    result = connector.deliver(action)
    assert result.status is DeliveryStatus.BOUNCED
    assert "ada@example.com" not in result.detail  # the server quoted it; redacted
    assert result.detail == "SMTP 550 5.1.1 <address>: Recipient address rejected"
    assert dict(result.properties) == {"contact": "email", "bounce": "hard", "smtp_code": 550}
    tp = outcome_touchpoint(
        action, Outcome.BOUNCED, connector="email", occurred_at=1, extra=result.properties
    )
    assert tp.name == "Action Bounced"
    assert (tp.properties["contact"], tp.properties["bounce"]) == ("email", "hard")
    assert dict(tp.traits) == {"email_bounced": True}


@pytest.mark.parametrize(
    ("rcpt", "data", "status", "retryable"),
    [
        (None, "451 4.3.0 try again later", DeliveryStatus.FAILED, True),
        ("450 4.2.1 mailbox busy", None, DeliveryStatus.FAILED, True),
        ("550 5.7.1 sender blocked by policy", None, DeliveryStatus.REJECTED, False),
        (None, "554 5.6.0 message content rejected", DeliveryStatus.REJECTED, False),
    ],
)
def test_smtp_refusals_decide_the_result(smtp, rcpt, data, status, retryable):
    smtp.rcpt = lambda _address: rcpt
    smtp.data = lambda: data
    connector = EmailConnector.from_config(env_for(smtp))
    result = connector.deliver(an_action(template=None))
    assert (result.status, result.retryable) == (status, retryable)
    # the connection survives a refusal: the next message goes through on it
    smtp.rcpt, smtp.data = (lambda _address: None), (lambda: None)
    assert connector.deliver(an_action(2, template=None)).status is DeliveryStatus.DELIVERED
    connector.close()


def test_nothing_listening_is_retryable_and_a_dropped_connection_is_replaced(smtp):
    port = free_port()
    down = EmailConnector.from_config({**env_for(smtp), "ROTA_SMTP_PORT": str(port)})
    result = down.deliver(an_action(template=None))
    assert (result.status, result.retryable) == (DeliveryStatus.FAILED, True)

    connector = EmailConnector.from_config(env_for(smtp))
    assert connector.deliver(an_action(1, template=None)).status is DeliveryStatus.DELIVERED
    smtp.close()  # the server goes away...
    smtp.__post_init__()  # ...and comes back on another port: the idle connection is dead
    connector.port = smtp.port
    assert connector.deliver(an_action(2, template=None)).status is DeliveryStatus.DELIVERED
    connector.close()
    assert [m.recipients for m in smtp.mails] == [["ada@example.com"]] * 2


def test_redact_removes_addresses():
    assert redact("550 <bob@example.com> unknown, cc x.y@z.example") == (
        "550 <address> unknown, cc <address>"
    )


@pytest.mark.kafka
def test_through_the_runner_a_bounce_is_reported_not_dead_lettered(kafka, topics, smtp):
    smtp.rcpt = lambda address: "550 5.1.1 no such user" if address.startswith("gone") else None
    runner = make_runner(kafka, topics, EmailConnector.from_config(env_for(smtp)))
    good = an_action(1, template=None)
    gone = an_action(2, template=None, payload={"email": "gone@example.com"})
    publish_actions(kafka.bootstrap, topics.actions("email"), [good, gone])

    with running(runner):
        wait_for(
            lambda: runner.stats.delivered == 1 and runner.stats.bounced == 1,
            timeout=30,
            what="one delivered, one bounced",
        )

    assert runner.stats.retries == 0 and runner.stats.dead_lettered == 0
    reported = {t.action_id: t for t in outcomes(kafka.bootstrap, topics)}
    assert reported["act-1"].name == "Action Delivered"
    bounced = reported["act-2"]
    assert bounced.name == "Action Bounced"
    assert (bounced.properties["contact"], bounced.properties["bounce"]) == ("email", "hard")
    assert bounced.properties["smtp_code"] == 550
    assert dict(bounced.traits) == {"email_bounced": True}
    assert dead_letters(kafka.bootstrap, topics) == []
    assert [m.recipients for m in smtp.mails] == [["ada@example.com"]]
