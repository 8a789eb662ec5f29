"""The feedback receiver: an HTTP server providers call back, publishing touchpoints.

Routes (the provider's documented formats):

- ``POST /sendgrid/events`` - SendGrid Event Webhook: a JSON array of events; verified
  when ``ROTA_SENDGRID_WEBHOOK_PUBLIC_KEY`` is set;
- ``POST /twilio/status`` - Twilio message status callbacks (form-encoded); verified
  when ``ROTA_TWILIO_AUTH_TOKEN`` is set. Twilio signs the URL it called: behind a proxy
  set ``ROTA_FEEDBACK_PUBLIC_URL`` to the public origin (``https://feedback.example``);
- ``GET|POST /unsubscribe?token=...`` - the email's one-click unsubscribe
  (``connectors.unsubscribe``; needs ``ROTA_UNSUBSCRIBE_SECRET``). ``GET`` only shows a
  confirmation form: mail scanners follow links, so a GET must not unsubscribe anyone;
- ``GET /healthz``, ``GET /metrics``.

The answer is 2xx only after Kafka acknowledged every touchpoint of the request, so a
provider's retry covers a broker outage (and its duplicates are de-duplicated by event
id). A bad signature is 403; a body that is not the format, 400 (providers do not retry
those, and retrying would not help).
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import orjson
from confluent_kafka import KafkaError, Producer
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors import config, metrics
from connectors.base import ConfigError
from connectors.feedback import events, signatures
from connectors.secrets import Secret, secret
from connectors.unsubscribe import BadToken, read_token
from orchestrator.kafka_security import producer_config
from orchestrator.records import Touchpoint
from orchestrator.wire import encode_touchpoint

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class FeedbackSettings:
    host: str = "0.0.0.0"
    port: int = 8088
    public_url: str | None = None
    sendgrid_key: ec.EllipticCurvePublicKey | None = None
    twilio_token: Secret | None = None
    unsubscribe_secret: bytes | None = None
    publish_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FeedbackSettings:
        """``ROTA_FEEDBACK_HOST`` / ``_PORT`` / ``_PUBLIC_URL``,
        ``ROTA_SENDGRID_WEBHOOK_PUBLIC_KEY[_FILE]``, ``ROTA_TWILIO_AUTH_TOKEN[_FILE]``,
        ``ROTA_UNSUBSCRIBE_SECRET[_FILE]``."""
        key = None
        key_source = secret(env, "ROTA_SENDGRID_WEBHOOK_PUBLIC_KEY", required=False)
        if key_source is not None:
            try:
                key = signatures.sendgrid_public_key(key_source.get())
            except ValueError as exc:
                raise ConfigError("ROTA_SENDGRID_WEBHOOK_PUBLIC_KEY", str(exc)) from None
        public_url = None
        if env.get("ROTA_FEEDBACK_PUBLIC_URL", "").strip():
            public_url = config.http_url(env, "ROTA_FEEDBACK_PUBLIC_URL").rstrip("/")
        unsubscribe = secret(env, "ROTA_UNSUBSCRIBE_SECRET", required=False)
        return cls(
            host=env.get("ROTA_FEEDBACK_HOST", "").strip() or "0.0.0.0",
            port=config.integer(env, "ROTA_FEEDBACK_PORT", 8088, minimum=0, maximum=65535),
            public_url=public_url,
            sendgrid_key=key,
            twilio_token=secret(env, "ROTA_TWILIO_AUTH_TOKEN", required=False),
            unsubscribe_secret=unsubscribe.get().encode() if unsubscribe else None,
        )

    def warnings(self) -> list[str]:
        out = []
        if self.sendgrid_key is None:
            out.append(
                "ROTA_SENDGRID_WEBHOOK_PUBLIC_KEY is not set: SendGrid events are not verified"
            )
        if self.twilio_token is None:
            out.append("ROTA_TWILIO_AUTH_TOKEN is not set: Twilio callbacks are not verified")
        if self.unsubscribe_secret is None:
            out.append("ROTA_UNSUBSCRIBE_SECRET is not set: /unsubscribe is disabled")
        return out


class Publisher:
    """Touchpoints to Kafka, answering only once Kafka acknowledged them all."""

    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 10.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self._producer = Producer(
            {
                **producer_config(bootstrap),
                "client.id": "rota-feedback",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": int(timeout * 1000),
            }
        )

    def publish(self, touchpoints: list[Touchpoint]) -> str | None:
        """Publish and wait; returns None when all were acknowledged, else the error."""
        if not touchpoints:
            return None
        lock = threading.Lock()
        done = threading.Event()
        remaining = [len(touchpoints)]
        errors: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: object) -> None:
            with lock:
                if error is not None:
                    errors.append(error)
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        for tp in touchpoints:
            assert tp.customer_id is not None
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        key=tp.customer_id.encode(),
                        value=encode_touchpoint(tp),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
        deadline = time.monotonic() + self.timeout + 1
        while not done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.05)  # any thread's poll serves every callback
        if not done.is_set():
            return "not acknowledged in time"
        return str(errors[0]) if errors else None

    def close(self) -> None:
        self._producer.flush(self.timeout)


class FeedbackServer:
    def __init__(
        self,
        settings: FeedbackSettings,
        publisher: Publisher,
        *,
        now_ms: Any = wall_ms,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.now_ms = now_ms
        self.httpd = ThreadingHTTPServer((settings.host, settings.port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def serve(self, stop: threading.Event) -> None:
        thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        thread.start()
        try:
            stop.wait()
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.publisher.close()

    # -- requests ----------------------------------------------------------------------

    def sendgrid(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        key = self.settings.sendgrid_key
        if key is not None and not signatures.verify_sendgrid(
            key,
            body,
            headers.get(signatures.SENDGRID_SIGNATURE),
            headers.get(signatures.SENDGRID_TIMESTAMP),
        ):
            return 403, "bad or missing signature"
        try:
            batch = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, "not JSON"
        if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
            return 400, "expected a JSON array of event objects"
        now = self.now_ms()
        mapped = [events.sendgrid(event, received_at=now) for event in batch]
        return self._publish("sendgrid", mapped)

    def twilio(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        try:
            form = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return 400, "not a form"
        token = self.settings.twilio_token
        if token is not None:
            origin = self.settings.public_url or f"http://{headers.get('Host', '')}"
            url = origin + path
            if not signatures.verify_twilio(
                token.get(), url, form, headers.get(signatures.TWILIO_SIGNATURE)
            ):
                return 403, "bad or missing signature"
        params = dict(parse_qsl(urlsplit(path).query))
        params.update(form)
        return self._publish("twilio", [events.twilio(params, received_at=self.now_ms())])

    def unsubscribe(self, token: str) -> tuple[int, str]:
        secret_key = self.settings.unsubscribe_secret
        if secret_key is None:
            return 404, "unsubscribe is not enabled"
        try:
            request = read_token(secret_key, token)
        except BadToken:
            return 400, "this unsubscribe link is not valid"
        tp = events.unsubscribed(request, received_at=self.now_ms())
        return self._publish("unsubscribe", [events.Mapped(tp)])

    def _publish(self, provider: str, mapped: list[events.Mapped]) -> tuple[int, str]:
        touchpoints = [m.touchpoint for m in mapped if m.touchpoint is not None]
        error = self.publisher.publish(touchpoints)
        if error is not None:
            log.error("feedback: publishing %d touchpoint(s) failed: %s", len(touchpoints), error)
            return 503, "could not publish; try again"
        for m in mapped:
            result = "published" if m.touchpoint is not None else m.skipped
            metrics.FEEDBACK_EVENTS.labels(provider, result).inc()
        return 200, f"{len(touchpoints)} published"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "rota-feedback/1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/healthz":
                    self._answer(200, "ok")
                elif parts.path == "/metrics":
                    self._answer(200, generate_latest().decode(), CONTENT_TYPE_LATEST)
                elif parts.path == "/unsubscribe":
                    self._confirm_page(parse_qs(parts.query).get("token", [""])[0])
                else:
                    self._answer(404, "not found")

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, "too large")
                    return
                body = self.rfile.read(length)
                headers = {k: v for k, v in self.headers.items()}
                if parts.path == "/sendgrid/events":
                    provider, (status, text) = "sendgrid", server.sendgrid(body, headers)
                elif parts.path == "/twilio/status":
                    provider, (status, text) = "twilio", server.twilio(self.path, body, headers)
                elif parts.path == "/unsubscribe":
                    token = parse_qs(parts.query).get("token", [""])[0]
                    provider, (status, text) = "unsubscribe", server.unsubscribe(token)
                else:
                    self._answer(404, "not found")
                    return
                metrics.FEEDBACK_REQUESTS.labels(provider, str(status)).inc()
                self._answer(status, text)

            def _confirm_page(self, token: str) -> None:
                # The form posts back to this same URL, token in the query.
                page = (
                    "<!doctype html><html><body><form method=post>"
                    f'<input type=hidden name=token value="{html.escape(token)}">'
                    "<p>Stop these emails?</p><button>Unsubscribe</button></form></body></html>"
                )
                self._answer(200, page, "text/html; charset=utf-8")

            def _answer(self, status: int, text: str, kind: str = "text/plain") -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # request lines carry tokens and ids: not for logs

        return Handler
