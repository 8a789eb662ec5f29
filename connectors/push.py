"""The push connector: Firebase Cloud Messaging's HTTP v1 API (or its format).

One request per action, as FCM documents it::

    POST {base}/v1/projects/{project}/messages:send
    Authorization: Bearer <OAuth 2 access token>
    Content-Type: application/json

    {"message": {"token": "<device token>",
                 "notification": {"title": "...", "body": "..."},
                 "data": {"rota_action_id": "...", "journey_id": "...", ...}}}

``token`` is the payload's ``push_token`` (an action without one is rejected); title and
body are rendered from ``<template>.title.txt`` and ``<template>.body.txt``
(``connectors.templates``; the built-in default uses the payload's ``title`` and
``body``). ``data`` carries the action id and journey so the app can report opens as
touchpoints tied to the action - never the customer id: it would sit on the device.

The access token comes from ``ROTA_FCM_ACCESS_TOKEN`` or, better, ``_FILE``: Google's
tokens live an hour, and a file written by a token refresher is re-read when it
changes. The base URL is configurable (``ROTA_FCM_BASE_URL``) for proxies and tests.

What the answer means: 2xx - delivered to FCM (the returned message ``name`` is the
provider message id); 404 ``UNREGISTERED`` (and 400 ``INVALID_ARGUMENT`` naming the
token) - a hard bounce of the customer's ``push_token``; 401 - an expired token,
retryable; 429 ``QUOTA_EXCEEDED``, 5xx - retryable (``Retry-After`` honoured); other
4xx - rejected.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import quote, urlsplit

import orjson

from connectors import config, templates
from connectors.base import DeliveryResult
from connectors.httpclient import HttpClient, HttpResponse, retry_after_seconds
from connectors.secrets import Secret, secret
from orchestrator.records import NextBestAction

DEFAULT_BASE_URL = "https://fcm.googleapis.com"
USER_AGENT = "rota-connector-push/1"
PARTS = ("title.txt", "body.txt")
BUILTIN = {
    "title.txt": "{{ title | default('News for you') }}",
    "body.txt": "{{ body | default('Open the app to see what is new.') }}",
}


class FcmPushConnector:
    name = "push"

    def __init__(
        self,
        *,
        project: str,
        access_token: Secret,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        templates_: templates.Templates | None = None,
        channels: tuple[str, ...] = ("push",),
        max_retry_after: float = 60.0,
    ) -> None:
        self.project = project
        self._token = access_token
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.templates = templates_ or templates.Templates(None, PARTS, BUILTIN)
        self.channels = channels
        self.max_retry_after = max_retry_after
        base_path = urlsplit(self.base_url).path
        self.path = f"{base_path}/v1/projects/{quote(project)}/messages:send"
        self._http = HttpClient(self.base_url, timeout=timeout)

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """``ROTA_FCM_PROJECT`` and ``ROTA_FCM_ACCESS_TOKEN[_FILE]`` (required);
        ``ROTA_FCM_BASE_URL``, ``ROTA_FCM_TIMEOUT``, ``ROTA_PUSH_TEMPLATES``,
        ``ROTA_PUSH_CHANNELS``."""
        project = config.required(env, "ROTA_FCM_PROJECT", "the Firebase project id")
        token = secret(env, "ROTA_FCM_ACCESS_TOKEN")
        assert token is not None
        base_url = DEFAULT_BASE_URL
        if env.get("ROTA_FCM_BASE_URL", "").strip():
            base_url = config.http_url(env, "ROTA_FCM_BASE_URL")
        return cls(
            project=project,
            access_token=token,
            base_url=base_url,
            timeout=config.seconds(env, "ROTA_FCM_TIMEOUT", 10.0, maximum=300.0),
            templates_=templates.load(env, "ROTA_PUSH_TEMPLATES", PARTS, BUILTIN),
            channels=config.channels(env, "ROTA_PUSH_CHANNELS", ("push",)),
        )

    def message(self, action: NextBestAction) -> dict[str, Any]:
        """The request body; raises ``ValueError`` (permanent)."""
        device = action.payload.get("push_token")
        if not isinstance(device, str) or not device.strip():
            raise ValueError("payload has no 'push_token' (the device token, from the profile)")
        parts = self.templates.render_action(action)
        title = " ".join(parts.get("title.txt", "").split())
        body = parts.get("body.txt", "").strip()
        if not title and not body:
            raise templates.RenderError(f"template {action.template!r} renders no title or body")
        data = {
            "rota_action_id": action.action_id,
            "journey_id": action.journey_id,
            "step": action.step,
        }
        if action.template:
            data["template"] = action.template
        if action.offer:
            data["offer"] = action.offer
        return {
            "message": {
                "token": device.strip(),
                "notification": {"title": title, "body": body},
                "data": data,  # FCM requires string values
            }
        }

    def deliver(self, action: NextBestAction) -> DeliveryResult:
        try:
            body = orjson.dumps(self.message(action))
        except ValueError as exc:
            return DeliveryResult.rejected(str(exc))
        headers = {
            "Authorization": f"Bearer {self._token.get()}",
            "Content-Type": "application/json; charset=UTF-8",
            "User-Agent": USER_AGENT,
        }
        try:
            response = self._http.request("POST", self.path, body, headers)
        except TimeoutError:
            return DeliveryResult.failed(f"no answer from FCM within {self.timeout:g}s")
        except (OSError, http.client.HTTPException) as exc:
            return DeliveryResult.failed(f"POST failed: {type(exc).__name__}: {exc}")
        return self._result(response)

    def _result(self, response: HttpResponse) -> DeliveryResult:
        status = response.status
        answer = _json(response.body)
        if 200 <= status < 300:
            name = answer.get("name")
            return DeliveryResult.delivered(
                response.detail, provider_message_id=name if isinstance(name, str) else None
            )
        error = answer.get("error")
        error = error if isinstance(error, dict) else {}
        fcm_code = _fcm_error_code(error)
        detail = response.detail + (f" ({fcm_code})" if fcm_code else "")
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(
                response.headers.get("Retry-After"), cap=self.max_retry_after
            )
            return DeliveryResult.failed(detail, retry_after=retry_after)
        if status == 401:
            return DeliveryResult.failed(detail + ": the access token is invalid or expired")
        if fcm_code == "UNREGISTERED" or (
            fcm_code == "INVALID_ARGUMENT" and "token" in str(error.get("message", "")).lower()
        ):
            return DeliveryResult.bounced(detail, contact="push_token", fcm_error=fcm_code)
        return DeliveryResult.rejected(detail, fcm_error=fcm_code or status)

    def close(self) -> None:
        self._http.close()


def _fcm_error_code(error: Mapping[str, Any]) -> str:
    """FCM's own code (``details[].errorCode``), else the canonical ``status``."""
    for item in error.get("details") or []:
        if isinstance(item, dict) and isinstance(item.get("errorCode"), str):
            return str(item["errorCode"])
    status = error.get("status")
    return status if isinstance(status, str) else ""


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
