"""The webhook connector: POSTs each action, as JSON, to a channel service's URL.

The request a channel service receives (the contract, documented in the README):

- body: ``NextBestAction.to_json()`` (times as ISO-8601 strings), UTF-8 JSON;
- ``Idempotency-Key: <action_id>``: the same action may arrive more than once (Kafka is
  at-least-once); the receiver de-duplicates on this key;
- with ``ROTA_WEBHOOK_SECRET`` set, ``X-Rota-Timestamp: <unix seconds>`` and
  ``X-Rota-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` so the receiver
  can check who sent it and reject replays of old requests (``verify``).

What the answer means: 2xx delivered (an ``X-Message-Id`` response header is kept as the
provider's message id); 408, 429, 5xx, timeouts and connection errors are retryable
failures (``Retry-After`` honoured, capped); any other status is a permanent rejection.
Redirects are not followed: configure the final URL.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
from collections.abc import Mapping
from typing import Self
from urllib.parse import urlsplit

import orjson

from connectors import config
from connectors.base import DeliveryResult
from connectors.httpclient import HttpClient, retry_after_seconds
from connectors.secrets import secret
from orchestrator.records import NextBestAction

__all__ = ["WebhookConnector", "retry_after_seconds", "signature", "verify"]

USER_AGENT = "rota-connector-webhook/1"
RETRYABLE_STATUSES = frozenset({408, 429})


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Rota-Signature`` value for a request."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(signature(secret, timestamp, body), header)


class WebhookConnector:
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        secret: bytes | None = None,
        channels: tuple[str, ...] = ("webhook",),
        max_retry_after: float = 60.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.channels = channels
        self.timeout = timeout
        self.max_retry_after = max_retry_after
        self._secret = secret
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._http = HttpClient(url, timeout=timeout)

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """``ROTA_WEBHOOK_URL`` (required), ``ROTA_WEBHOOK_TIMEOUT`` (seconds, default 5),
        ``ROTA_WEBHOOK_SECRET[_FILE]`` (optional HMAC key), ``ROTA_WEBHOOK_CHANNELS``
        (comma-separated channels to serve, default ``webhook``)."""
        url = config.http_url(env, "ROTA_WEBHOOK_URL")
        timeout = config.seconds(env, "ROTA_WEBHOOK_TIMEOUT", 5.0, maximum=300.0)
        key = secret(env, "ROTA_WEBHOOK_SECRET", required=False)
        channels = config.channels(env, "ROTA_WEBHOOK_CHANNELS", ("webhook",))
        return cls(
            url, timeout=timeout, secret=key.get().encode() if key else None, channels=channels
        )

    def request(self, action: NextBestAction) -> tuple[bytes, dict[str, str]]:
        """The body and headers this connector sends for ``action``."""
        body = orjson.dumps(action.to_json(), option=orjson.OPT_SORT_KEYS)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": action.action_id,
            "User-Agent": USER_AGENT,
        }
        if self._secret:
            timestamp = str(int(time.time()))
            headers["X-Rota-Timestamp"] = timestamp
            headers["X-Rota-Signature"] = signature(self._secret, timestamp, body)
        return body, headers

    def deliver(self, action: NextBestAction) -> DeliveryResult:
        body, headers = self.request(action)
        try:
            response = self._http.request("POST", self._target, body, headers)
        except TimeoutError:
            return DeliveryResult.failed(f"no answer within {self.timeout:g}s")
        except (OSError, http.client.HTTPException) as exc:
            return DeliveryResult.failed(f"POST failed: {type(exc).__name__}: {exc}")
        status, detail = response.status, response.detail
        if 200 <= status < 300:
            return DeliveryResult.delivered(detail, response.headers.get("X-Message-Id"))
        if status in RETRYABLE_STATUSES or status >= 500:
            retry_after = retry_after_seconds(
                response.headers.get("Retry-After"), cap=self.max_retry_after
            )
            return DeliveryResult.failed(detail, retry_after=retry_after)
        if 300 <= status < 400:
            detail += " (redirects are not followed: set ROTA_WEBHOOK_URL to the final URL)"
        return DeliveryResult.rejected(detail)

    def close(self) -> None:
        self._http.close()
