"""The email connector: one SMTP message per action, rendered from templates.

What a recipient gets: a ``multipart/alternative`` message (text and HTML) rendered from
the action's template (``connectors.templates``) with its payload; ``From``
``ROTA_EMAIL_FROM``; ``To`` the payload's ``email`` (the engine copies the profile's
contact points into the payload - an action without one is rejected, not guessed);
``Message-ID`` derived from the action id, so a message sent twice after a crash is
recognisably the same message; ``List-Unsubscribe`` (a one-click HTTPS link, RFC 8058,
and/or a mailto) and ``List-Unsubscribe-Post``.

Closing the loop with the provider: with ``ROTA_EMAIL_PROVIDER=sendgrid`` (sending
through SendGrid's SMTP relay) each message carries ``X-SMTPAPI`` unique arguments
``rota_action_id`` and ``rota_customer_id``; SendGrid returns them in every Event Webhook
event, which is how ``rota feedback serve`` ties an open or a bounce to the action and
the customer without a lookup table.

What the SMTP answer means: accepted - delivered (to the provider); a 5xx refusal of the
recipient - a hard bounce (``Action Bounced``, ``contact: email``) unless it is a policy
refusal (enhanced status 5.7.x: the sender is blocked, the address may be fine) -
rejected; other 5xx - rejected; 4xx, timeouts, dropped connections, failed logins -
retryable (a failing relay opens the runner's circuit). Server replies often quote the
address; it is replaced by ``<address>`` before the text goes anywhere.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
import threading
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Self

import orjson

from connectors import config, templates
from connectors.base import ConfigError, DeliveryResult
from connectors.privacy import redact_addresses
from connectors.secrets import Secret, secret
from connectors.unsubscribe import Unsubscribe, unsubscribe_url
from orchestrator.records import NextBestAction

SECURITY = ("starttls", "none", "tls")
PROVIDERS = ("smtp", "sendgrid")
PARTS = ("subject.txt", "txt", "html")
BUILTIN = {
    "subject.txt": "{{ subject | default('A message for you') }}",
    "txt": (
        "Hello {{ first_name | default('there') }},\n\n"
        "{{ body | default('We have news for you.') }}\n"
        "{% if offer %}\nYour offer: {{ offer }}\n{% endif %}"
        "{% if unsubscribe_url %}\n--\nUnsubscribe: {{ unsubscribe_url }}\n{% endif %}"
    ),
    "html": (
        "<!doctype html>\n<html><body>\n"
        "<p>Hello {{ first_name | default('there') }},</p>\n"
        "<p>{{ body | default('We have news for you.') }}</p>\n"
        "{% if offer %}<p>Your offer: <strong>{{ offer }}</strong></p>\n{% endif %}"
        '{% if unsubscribe_url %}<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
        "{% endif %}</body></html>\n"
    ),
}
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def redact(text: str) -> str:
    """Server text with email addresses replaced: it goes to logs and dead letters."""
    return redact_addresses(text)


def message_id(action_id: str, domain: str) -> str:
    return f"<{hashlib.sha256(action_id.encode()).hexdigest()[:32]}.rota@{domain}>"


class EmailConnector:
    name = "email"

    def __init__(
        self,
        *,
        host: str,
        sender: str,
        port: int = 587,
        security: str = "starttls",
        user: str | None = None,
        password: Secret | None = None,
        timeout: float = 10.0,
        templates_: templates.Templates | None = None,
        unsubscribe_base: str | None = None,
        unsubscribe_secret: bytes | None = None,
        unsubscribe_mailto: str | None = None,
        provider: str = "smtp",
        ssl_context: ssl.SSLContext | None = None,
        channels: tuple[str, ...] = ("email",),
    ) -> None:
        if security not in SECURITY:
            raise ValueError(f"security must be one of {SECURITY}")
        if unsubscribe_base and not unsubscribe_secret:
            raise ValueError("an unsubscribe URL needs a secret to sign its tokens")
        _name, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError(f"not an email address: {sender!r}")
        self.host, self.port, self.security = host, port, security
        self.sender = sender
        self.envelope_sender = address
        self.domain = address.rsplit("@", 1)[1]
        self.user, self._password = user, password
        self.timeout = timeout
        self.templates = templates_ or templates.Templates(None, PARTS, BUILTIN)
        self.unsubscribe_base = unsubscribe_base
        self._unsubscribe_secret = unsubscribe_secret
        self.unsubscribe_mailto = unsubscribe_mailto
        self.provider = provider
        self.channels = channels
        self._ssl = ssl_context or ssl.create_default_context()
        self._local = threading.local()
        self._open: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """``ROTA_SMTP_HOST``, ``ROTA_EMAIL_FROM`` (required); ``ROTA_SMTP_PORT``,
        ``ROTA_SMTP_SECURITY`` (starttls | none | tls), ``ROTA_SMTP_USER`` and
        ``ROTA_SMTP_PASSWORD[_FILE]``, ``ROTA_SMTP_CA_FILE``, ``ROTA_SMTP_TIMEOUT``,
        ``ROTA_EMAIL_TEMPLATES``, ``ROTA_EMAIL_UNSUBSCRIBE_URL`` with
        ``ROTA_UNSUBSCRIBE_SECRET[_FILE]``, ``ROTA_EMAIL_UNSUBSCRIBE_MAILTO``,
        ``ROTA_EMAIL_PROVIDER`` (smtp | sendgrid), ``ROTA_EMAIL_CHANNELS``."""
        host = config.required(env, "ROTA_SMTP_HOST", "the SMTP relay's host name")
        sender = config.required(env, "ROTA_EMAIL_FROM", 'e.g. "Shop <news@shop.example>"')
        if "@" not in parseaddr(sender)[1]:
            raise ConfigError("ROTA_EMAIL_FROM", f"{sender!r} is not an email address")
        security = config.choice(env, "ROTA_SMTP_SECURITY", SECURITY)
        default_port = {"starttls": 587, "none": 25, "tls": 465}[security]
        port = config.integer(env, "ROTA_SMTP_PORT", default_port, maximum=65535)
        user = env.get("ROTA_SMTP_USER", "").strip() or None
        password = secret(env, "ROTA_SMTP_PASSWORD", required=user is not None)
        if user is None and password is not None:
            raise ConfigError("ROTA_SMTP_USER", "is required when a password is set")
        if user is not None and security == "none":
            raise ConfigError(
                "ROTA_SMTP_SECURITY", "is none: a password would cross the network in clear"
            )
        context = ssl.create_default_context()
        ca_file = env.get("ROTA_SMTP_CA_FILE", "").strip()
        if ca_file:
            try:
                context.load_verify_locations(ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("ROTA_SMTP_CA_FILE", f"cannot load {ca_file}: {exc}") from None
        unsubscribe_base = env.get("ROTA_EMAIL_UNSUBSCRIBE_URL", "").strip() or None
        unsubscribe_key = None
        if unsubscribe_base:
            config.http_url(env, "ROTA_EMAIL_UNSUBSCRIBE_URL")
            found = secret(env, "ROTA_UNSUBSCRIBE_SECRET")
            assert found is not None
            unsubscribe_key = found.get().encode()
        mailto = env.get("ROTA_EMAIL_UNSUBSCRIBE_MAILTO", "").strip() or None
        if mailto and "@" not in mailto:
            raise ConfigError("ROTA_EMAIL_UNSUBSCRIBE_MAILTO", f"{mailto!r} is not an address")
        return cls(
            host=host,
            sender=sender,
            port=port,
            security=security,
            user=user,
            password=password,
            timeout=config.seconds(env, "ROTA_SMTP_TIMEOUT", 10.0, maximum=300.0),
            templates_=templates.load(env, "ROTA_EMAIL_TEMPLATES", PARTS, BUILTIN),
            unsubscribe_base=unsubscribe_base,
            unsubscribe_secret=unsubscribe_key,
            unsubscribe_mailto=mailto,
            provider=config.choice(env, "ROTA_EMAIL_PROVIDER", PROVIDERS),
            ssl_context=context,
            channels=config.channels(env, "ROTA_EMAIL_CHANNELS", ("email",)),
        )

    # -- the message -----------------------------------------------------------------

    def message(self, action: NextBestAction) -> EmailMessage:
        """The message for ``action``; raises ``templates.RenderError`` or ``ValueError``
        (no usable recipient) - both permanent."""
        recipient = action.payload.get("email")
        if not isinstance(recipient, str) or not recipient.strip():
            raise ValueError(
                "payload has no 'email' (the customer's address, copied from the profile)"
            )
        try:
            to = Address(addr_spec=recipient.strip())
        except (ValueError, IndexError):
            raise ValueError("payload 'email' is not a valid address") from None
        one_click = None
        if self.unsubscribe_base and self._unsubscribe_secret:
            one_click = unsubscribe_url(
                self.unsubscribe_base,
                self._unsubscribe_secret,
                Unsubscribe(action.customer_id, action.channel, action.action_id),
            )
        parts = self.templates.render_action(action, unsubscribe_url=one_click or "")
        subject = " ".join(parts.get("subject.txt", "").split())
        if not subject:
            raise templates.RenderError(f"template {action.template!r} renders no subject")
        text, html = parts.get("txt"), parts.get("html")
        if text is None and html is None:
            raise templates.RenderError(f"template {action.template!r} has no .txt or .html")
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(action.created_at / 1000, usegmt=True)
        msg["Message-ID"] = message_id(action.action_id, self.domain)
        unsubscribe = [f"<{u}>" for u in (one_click,) if u]
        if self.unsubscribe_mailto:
            unsubscribe.append(f"<mailto:{self.unsubscribe_mailto}?subject=unsubscribe>")
        if unsubscribe:
            msg["List-Unsubscribe"] = ", ".join(unsubscribe)
        if one_click and one_click.startswith("https://"):
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if self.provider == "sendgrid":
            args = {"rota_action_id": action.action_id, "rota_customer_id": action.customer_id}
            msg["X-SMTPAPI"] = orjson.dumps({"unique_args": args}).decode()
        if text is not None:
            msg.set_content(text)
            if html is not None:
                msg.add_alternative(html, subtype="html")
        else:
            assert html is not None
            msg.set_content(html, subtype="html")
        return msg

    # -- delivery --------------------------------------------------------------------

    def deliver(self, action: NextBestAction) -> DeliveryResult:
        try:
            msg = self.message(action)
        except ValueError as exc:  # RenderError included
            return DeliveryResult.rejected(str(exc))
        recipient = str(msg["To"].addresses[0].addr_spec)
        try:
            self._send(msg, recipient)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            return self._refused(code, reply, recipient=True)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            return self._refused(exc.smtp_code, exc.smtp_error, recipient=False)
        except smtplib.SMTPAuthenticationError as exc:
            return DeliveryResult.failed(f"SMTP login refused: {exc.smtp_code}")
        except smtplib.SMTPResponseException as exc:
            return self._refused(exc.smtp_code, exc.smtp_error, recipient=False)
        except TimeoutError:
            return DeliveryResult.failed(f"no answer from {self.host} within {self.timeout:g}s")
        except (smtplib.SMTPException, OSError) as exc:
            return DeliveryResult.failed(f"SMTP failed: {type(exc).__name__}: {redact(str(exc))}")
        return DeliveryResult.delivered("250 accepted", provider_message_id=msg["Message-ID"])

    def _refused(self, code: int, reply: bytes | str, *, recipient: bool) -> DeliveryResult:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        detail = f"SMTP {code} {redact(' '.join(text.split()))}".strip()
        if code < 500:
            return DeliveryResult.failed(detail)
        enhanced = _ENHANCED.search(text)
        policy = enhanced is not None and enhanced.group(2) == "7"
        if recipient and not policy:
            return DeliveryResult.bounced(detail, contact="email", smtp_code=code)
        return DeliveryResult.rejected(detail, smtp_code=code)

    def _send(self, msg: EmailMessage, recipient: str) -> None:
        smtp, reused = self._connection()
        try:
            self._transaction(smtp, msg, recipient)
            return
        except smtplib.SMTPServerDisconnected:
            if not reused:
                raise
        # An idle connection the server had closed: the message was not taken; again.
        smtp, _ = self._connection()
        self._transaction(smtp, msg, recipient)

    def _transaction(self, smtp: smtplib.SMTP, msg: EmailMessage, recipient: str) -> None:
        try:
            smtp.send_message(msg, from_addr=self.envelope_sender, to_addrs=[recipient])
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
            raise  # a refusal: smtplib reset the session, the connection stays usable
        except BaseException:
            self._drop(smtp)
            raise

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        smtp: smtplib.SMTP | None = getattr(self._local, "smtp", None)
        if smtp is not None:
            return smtp, True
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._ssl)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError(
                        f"{self.host} does not offer STARTTLS (ROTA_SMTP_SECURITY=starttls)"
                    )
                smtp.starttls(context=self._ssl)
                smtp.ehlo()
            if self.user is not None and self._password is not None:
                smtp.login(self.user, self._password.get())
        except BaseException:
            smtp.close()
            raise
        self._local.smtp = smtp
        with self._lock:
            self._open.append(smtp)
        return smtp, False

    def _drop(self, smtp: smtplib.SMTP) -> None:
        smtp.close()
        if getattr(self._local, "smtp", None) is smtp:
            self._local.smtp = None
        with self._lock:
            if smtp in self._open:
                self._open.remove(smtp)

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, []
        for smtp in connections:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
