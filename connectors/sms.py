"""The SMS connector: Twilio's Messages API (or anything speaking its format).

One request per action, as Twilio documents it::

    POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json
    Authorization: Basic base64(AccountSid:AuthToken)
    Content-Type: application/x-www-form-urlencoded

    To=+15551234567&From=+15557654321&Body=...&StatusCallback=...

``To`` is the payload's ``phone`` (E.164; an action without one is rejected); ``From`` is
``ROTA_TWILIO_FROM`` or, instead, ``MessagingServiceSid`` from
``ROTA_TWILIO_MESSAGING_SERVICE_SID``; ``Body`` is rendered from the ``<template>.txt``
template (``connectors.templates``). The base URL is configurable
(``ROTA_TWILIO_BASE_URL``) for regional edges, proxies and tests.

Closing the loop: with ``ROTA_TWILIO_STATUS_CALLBACK`` set (the public URL of ``rota
feedback serve``'s ``/twilio/status``), each message asks Twilio to report its status to
that URL with ``rota_action_id`` and ``rota_customer_id`` added to the query, which
Twilio signs along with the rest of the URL; the receiver turns them into ``SMS
Delivered`` / ``SMS Failed`` touchpoints of the right customer and action.

What the answer means: 2xx - delivered to Twilio (its ``sid`` is the provider message
id); error 21211 (invalid ``To``) or 21614 (not a mobile number) - a hard bounce of the
customer's ``phone``; 21610 (the customer replied STOP) - rejected with ``consent:
opted_out``; 401/403 - a credentials problem, retryable (the circuit opens, nothing is
dead-lettered while someone fixes the token); 429 and 5xx - retryable (``Retry-After``
honoured); other 4xx - rejected.
"""

from __future__ import annotations

import base64
import http.client
import re
from collections.abc import Mapping
from typing import Self
from urllib.parse import quote, urlencode, urlsplit

import orjson

from connectors import config, templates
from connectors.base import ConfigError, DeliveryResult
from connectors.httpclient import HttpClient, HttpResponse, retry_after_seconds
from connectors.secrets import Secret, secret
from orchestrator.records import NextBestAction

DEFAULT_BASE_URL = "https://api.twilio.com"
USER_AGENT = "rota-connector-sms/1"
PARTS = ("txt",)
BUILTIN = {"txt": "{{ body | default('You have a new message.') }}"}
BOUNCE_CODES = frozenset({21211, 21614})
OPTED_OUT_CODE = 21610
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def with_query(url: str, params: Mapping[str, str]) -> str:
    joiner = "&" if urlsplit(url).query else "?"
    return url + joiner + urlencode(params)


class TwilioSmsConnector:
    name = "sms"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: Secret,
        sender: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        status_callback: str | None = None,
        timeout: float = 10.0,
        templates_: templates.Templates | None = None,
        channels: tuple[str, ...] = ("sms",),
        max_retry_after: float = 60.0,
    ) -> None:
        if (sender is None) == (messaging_service_sid is None):
            raise ValueError("give exactly one of sender and messaging_service_sid")
        self.account_sid = account_sid
        self._token = auth_token
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.base_url = base_url.rstrip("/")
        self.status_callback = status_callback
        self.timeout = timeout
        self.templates = templates_ or templates.Templates(None, PARTS, BUILTIN)
        self.channels = channels
        self.max_retry_after = max_retry_after
        base_path = urlsplit(self.base_url).path
        self.path = f"{base_path}/2010-04-01/Accounts/{quote(account_sid)}/Messages.json"
        self._http = HttpClient(self.base_url, timeout=timeout)

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """``ROTA_TWILIO_ACCOUNT_SID``, ``ROTA_TWILIO_AUTH_TOKEN[_FILE]`` and one of
        ``ROTA_TWILIO_FROM`` / ``ROTA_TWILIO_MESSAGING_SERVICE_SID`` (required);
        ``ROTA_TWILIO_BASE_URL``, ``ROTA_TWILIO_STATUS_CALLBACK``, ``ROTA_TWILIO_TIMEOUT``,
        ``ROTA_SMS_TEMPLATES``, ``ROTA_SMS_CHANNELS``."""
        sid = config.required(env, "ROTA_TWILIO_ACCOUNT_SID", "AC...")
        token = secret(env, "ROTA_TWILIO_AUTH_TOKEN")
        assert token is not None
        sender = env.get("ROTA_TWILIO_FROM", "").strip() or None
        service = env.get("ROTA_TWILIO_MESSAGING_SERVICE_SID", "").strip() or None
        if (sender is None) == (service is None):
            raise ConfigError(
                "ROTA_TWILIO_FROM",
                "set it (a sender number) or ROTA_TWILIO_MESSAGING_SERVICE_SID, exactly one",
            )
        base_url = DEFAULT_BASE_URL
        if env.get("ROTA_TWILIO_BASE_URL", "").strip():
            base_url = config.http_url(env, "ROTA_TWILIO_BASE_URL")
        callback = None
        if env.get("ROTA_TWILIO_STATUS_CALLBACK", "").strip():
            callback = config.http_url(env, "ROTA_TWILIO_STATUS_CALLBACK")
        return cls(
            account_sid=sid,
            auth_token=token,
            sender=sender,
            messaging_service_sid=service,
            base_url=base_url,
            status_callback=callback,
            timeout=config.seconds(env, "ROTA_TWILIO_TIMEOUT", 10.0, maximum=300.0),
            templates_=templates.load(env, "ROTA_SMS_TEMPLATES", PARTS, BUILTIN),
            channels=config.channels(env, "ROTA_SMS_CHANNELS", ("sms",)),
        )

    def form(self, action: NextBestAction) -> dict[str, str]:
        """The form fields of the request; raises ``ValueError`` (permanent)."""
        phone = action.payload.get("phone")
        if not isinstance(phone, str) or not phone.strip():
            raise ValueError("payload has no 'phone' (the customer's number, from the profile)")
        phone = phone.strip()
        if not _E164.match(phone):
            raise ValueError("payload 'phone' is not an E.164 number (+ and 7-15 digits)")
        body = self.templates.render_action(action)
        text = body["txt"].strip()
        if not text:
            raise templates.RenderError(f"template {action.template!r} renders an empty body")
        fields = {"To": phone, "Body": text}
        if self.sender is not None:
            fields["From"] = self.sender
        else:
            assert self.messaging_service_sid is not None
            fields["MessagingServiceSid"] = self.messaging_service_sid
        if self.status_callback:
            fields["StatusCallback"] = with_query(
                self.status_callback,
                {"rota_action_id": action.action_id, "rota_customer_id": action.customer_id},
            )
        return fields

    def deliver(self, action: NextBestAction) -> DeliveryResult:
        try:
            fields = self.form(action)
        except ValueError as exc:
            return DeliveryResult.rejected(str(exc))
        credentials = base64.b64encode(f"{self.account_sid}:{self._token.get()}".encode())
        headers = {
            "Authorization": f"Basic {credentials.decode()}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            response = self._http.request("POST", self.path, urlencode(fields).encode(), headers)
        except TimeoutError:
            return DeliveryResult.failed(f"no answer from Twilio within {self.timeout:g}s")
        except (OSError, http.client.HTTPException) as exc:
            return DeliveryResult.failed(f"POST failed: {type(exc).__name__}: {exc}")
        return self._result(response)

    def _result(self, response: HttpResponse) -> DeliveryResult:
        status = response.status
        error = _json(response.body)
        if 200 <= status < 300:
            sid = error.get("sid")
            return DeliveryResult.delivered(
                response.detail, provider_message_id=sid if isinstance(sid, str) else None
            )
        code = error.get("code")
        detail = response.detail
        if isinstance(code, int):
            detail += f" (Twilio error {code})"
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(
                response.headers.get("Retry-After"), cap=self.max_retry_after
            )
            return DeliveryResult.failed(detail, retry_after=retry_after)
        if status in (401, 403):
            return DeliveryResult.failed(detail + ": check the account SID and auth token")
        if code in BOUNCE_CODES:
            return DeliveryResult.bounced(detail, contact="phone", twilio_error=code)
        if code == OPTED_OUT_CODE:
            return DeliveryResult.rejected(detail, consent="opted_out", twilio_error=code)
        if isinstance(code, int):
            return DeliveryResult.rejected(detail, twilio_error=code)
        return DeliveryResult.rejected(detail)

    def close(self) -> None:
        self._http.close()


def _json(body: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
