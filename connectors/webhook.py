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
import threading
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Self
from urllib.parse import urlsplit

import orjson

from connectors import config
from connectors.base import DeliveryResult
from orchestrator.records import NextBestAction

USER_AGENT = "rota-connector-webhook/1"
RETRYABLE_STATUSES = frozenset({408, 429})
_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
)


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


def retry_after_seconds(value: str | None, *, cap: float, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), within [0, cap]."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min(when.timestamp() - (time.time() if now is None else now), cap))


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
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """``ROTA_WEBHOOK_URL`` (required), ``ROTA_WEBHOOK_TIMEOUT`` (seconds, default 5),
        ``ROTA_WEBHOOK_SECRET`` (optional HMAC key), ``ROTA_WEBHOOK_CHANNELS``
        (comma-separated channels to serve, default ``webhook``)."""
        url = config.http_url(env, "ROTA_WEBHOOK_URL")
        timeout = config.seconds(env, "ROTA_WEBHOOK_TIMEOUT", 5.0, maximum=300.0)
        secret = env.get("ROTA_WEBHOOK_SECRET", "")
        channels = config.channels(env, "ROTA_WEBHOOK_CHANNELS", ("webhook",))
        return cls(url, timeout=timeout, secret=secret.encode() or None, channels=channels)

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
            status, reason, response_headers = self._post(body, headers)
        except TimeoutError:
            return DeliveryResult.failed(f"no answer within {self.timeout:g}s")
        except (OSError, http.client.HTTPException) as exc:
            return DeliveryResult.failed(f"POST failed: {type(exc).__name__}: {exc}")
        detail = f"HTTP {status} {reason}".strip()
        if 200 <= status < 300:
            return DeliveryResult.delivered(detail, response_headers.get("X-Message-Id"))
        if status in RETRYABLE_STATUSES or status >= 500:
            retry_after = retry_after_seconds(
                response_headers.get("Retry-After"), cap=self.max_retry_after
            )
            return DeliveryResult.failed(detail, retry_after=retry_after)
        if 300 <= status < 400:
            detail += " (redirects are not followed: set ROTA_WEBHOOK_URL to the final URL)"
        return DeliveryResult.rejected(detail)

    def _post(
        self, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, http.client.HTTPMessage]:
        conn, reused = self._connection()
        try:
            return self._exchange(conn, body, headers)
        except _STALE_CONNECTION:
            self._drop(conn)
            if not reused:
                raise
        # The server closed an idle keep-alive connection before our request reached
        # it: once more on a fresh one (Idempotency-Key makes a repeat harmless).
        conn, _ = self._connection()
        try:
            return self._exchange(conn, body, headers)
        except BaseException:
            self._drop(conn)
            raise

    def _exchange(
        self, conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, http.client.HTTPMessage]:
        try:
            conn.request("POST", self._target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()  # drain, so the connection can carry the next request
        except _STALE_CONNECTION:
            raise
        except BaseException:
            self._drop(conn)
            raise
        if response.will_close:
            self._drop(conn)
        else:
            self._local.used = True
        return response.status, response.reason, response.headers

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it already carried a request."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, bool(getattr(self._local, "used", False))
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        self._local.conn, self._local.used = conn, False
        with self._lock:
            self._connections.append(conn)
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
