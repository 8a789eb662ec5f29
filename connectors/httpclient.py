"""HTTP/1.1 to one origin with a keep-alive connection per delivery thread.

The HTTP connectors (webhook, Twilio SMS, FCM push) call one provider over and over
from several threads; opening a TCP (and TLS) connection per action would cost more
than the request. ``http.client`` connections are not thread-safe, so each thread keeps
its own. A server may close an idle keep-alive connection just as a request goes out;
such a request is sent once more on a fresh connection (the providers de-duplicate:
the webhook's ``Idempotency-Key``, and it never reached the server anyway).
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def detail(self) -> str:
        return f"HTTP {self.status} {self.reason}".strip()


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


class HttpClient:
    def __init__(self, url: str, *, timeout: float) -> None:
        """``url``: any URL of the origin (scheme, host, port; the path is ignored)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> HttpResponse:
        """Send one request; raises ``TimeoutError``, ``OSError`` or
        ``http.client.HTTPException`` when no answer came."""
        conn, reused = self._connection()
        try:
            return self._exchange(conn, method, target, body, headers)
        except _STALE_CONNECTION:
            self._drop(conn)
            if not reused:
                raise
        conn, _ = self._connection()
        try:
            return self._exchange(conn, method, target, body, headers)
        except BaseException:
            self._drop(conn)
            raise

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes,
        headers: dict[str, str],
    ) -> HttpResponse:
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()  # drained, so the connection can carry the next one
        except _STALE_CONNECTION:
            raise
        except BaseException:
            self._drop(conn)
            raise
        if response.will_close:
            self._drop(conn)
        else:
            self._local.used = True
        return HttpResponse(response.status, response.reason, response.headers, data)

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
