"""``rota ingest serve``: the Segment HTTP Tracking API, in front of Kafka.

Web sites and apps instrumented with Segment or RudderStack SDKs point their API host
here and change nothing else. Endpoints: ``POST /v1/track``, ``/v1/identify``,
``/v1/page``, ``/v1/screen``, ``/v1/group``, ``/v1/alias``, ``/v1/batch`` (and the
short forms ``/v1/t`` ... ``/v1/b`` that browser SDKs use); ``GET /health`` and
``GET /metrics`` for operators.

The contract, as the Segment spec documents it:
- authentication: the write key as HTTP Basic username (or ``writeKey`` in the body,
  as browser SDKs send it); unknown or missing -> ``401``;
- ``Content-Encoding: gzip`` bodies are accepted;
- 32 KB per call, 500 KB per batch, 32 KB per message in a batch -> ``400`` beyond;
- invalid JSON or a message the spec does not allow -> ``400`` with
  ``{"success": false, "code": ..., "message": ...}``; a batch is validated whole
  first, so a bad message rejects the batch and nothing of it is published;
- ``200 {"success": true}`` only after Kafka acknowledged every event of the request;
  if it did not (within ``ROTA_INGEST_ACK_TIMEOUT``) -> ``503``: SDKs retry, and the
  retry carries the same ``messageId``, which is the touchpoint's ``event_id``, so
  events that did reach Kafka the first time are de-duplicated downstream.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator import wire
from orchestrator.ingest import metrics, payload, segment
from orchestrator.ingest.acks import AckingProducer, NotAcknowledged, Record
from orchestrator.ingest.config import HttpIngestConfig
from orchestrator.ingest.dedup import RecentIds
from orchestrator.ingest.writekeys import Source
from orchestrator.records import Touchpoint

log = logging.getLogger(__name__)

#: URL path segment -> endpoint (the ``endpoint`` metric label). Calls map to their
#: Segment type; ``batch`` carries typed messages.
ENDPOINTS: Mapping[str, str] = {
    **{kind: kind for kind in segment.KINDS},
    "batch": "batch",
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
    "b": "batch",
}
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}


class Reject(Exception):
    """An answer other than 200: status, reason code (a metric label) and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class HttpIngest:
    """The ingest's aiohttp application plus its Kafka producer. ``start`` binds and
    returns the base URL; ``stop`` drains requests in flight, then the producer."""

    def __init__(self, config: HttpIngestConfig) -> None:
        self.config = config
        self.recent = RecentIds(config.dedup_ids)
        self.producer: AckingProducer | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=payload.BATCH_LIMIT)
        app.router.add_post("/v1/{endpoint}", self._handle)
        app.router.add_route("OPTIONS", "/v1/{endpoint}", self._preflight)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.on_response_prepare.append(_add_cors)
        return app

    async def start(self) -> str:
        cfg = self.config
        self.producer = AckingProducer(cfg.bootstrap, ack_timeout=cfg.ack_timeout)
        # Bodies are inflated by payload.inflate, bounded; aiohttp would inflate them whole.
        self._runner = web.AppRunner(
            self.app(), access_log=None, shutdown_timeout=5.0, auto_decompress=False
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.port))
        await web.SockSite(self._runner, sock).start()
        port = sock.getsockname()[1]
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "") else cfg.host
        self.url = f"http://{host}:{port}"
        log.info(
            "HTTP ingest on %s: %d write key(s), publishing to %s",
            self.url,
            len(cfg.write_keys),
            cfg.topics.touchpoints,
        )
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await asyncio.get_running_loop().run_in_executor(None, producer.close)

    # -- handlers ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        received_at = int(time.time() * 1000)
        endpoint = ENDPOINTS.get(request.match_info["endpoint"])
        if endpoint is None:
            return web.json_response(
                {"success": False, "code": "not_found", "message": "no such endpoint"},
                status=404,
            )
        try:
            await self._ingest(request, endpoint, received_at)
            response = web.json_response({"success": True})
        except Reject as r:
            metrics.REJECTS.labels(r.code).inc()
            log.debug("rejected a %s request: %s (%s)", endpoint, r.code, r.status)
            response = web.json_response(
                {"success": False, "code": r.code, "message": r.message}, status=r.status
            )
            if r.status == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="rota-ingest"'
            elif r.status == 503:
                response.headers["Retry-After"] = "1"
        metrics.REQUESTS.labels(endpoint, str(response.status)).inc()
        metrics.REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        return response

    async def _ingest(self, request: web.Request, endpoint: str, received_at: int) -> None:
        header_key = _basic_username(request.headers.get("Authorization"))
        source = self.config.write_keys.lookup(header_key) if header_key else None
        if header_key is not None and source is None:
            raise Reject(401, "unauthorized", "invalid write key")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _from(payload.too_large(request.content_length, payload.BATCH_LIMIT)) from None
        limit = payload.BATCH_LIMIT if endpoint == "batch" else payload.CALL_LIMIT
        try:
            body = payload.decode(
                raw, encoding=request.headers.get("Content-Encoding"), limit=limit
            )
        except payload.PayloadError as exc:
            raise _from(exc) from None
        if not isinstance(body, dict):
            raise Reject(400, "invalid_request", "the body must be a JSON object")
        if source is None:
            source = self.config.write_keys.lookup(_str_or_none(body.get("writeKey")))
            if source is None:
                raise Reject(401, "unauthorized", "missing or invalid write key")
        touchpoints = self._touchpoints(body, endpoint, received_at, source)
        records = self._records(touchpoints, source)
        if self.producer is None:
            raise Reject(503, "kafka_unavailable", "the ingest is shutting down")
        try:
            await self.producer.send([r for _, r in records])
        except NotAcknowledged as exc:
            raise Reject(
                503, "kafka_unavailable", f"not acknowledged by Kafka, retry: {exc}"
            ) from None
        for tp, _ in records:
            self.recent.add(_dedup_key(source, tp.event_id))
            metrics.EVENTS.labels(tp.type).inc()

    def _touchpoints(
        self, body: dict[str, Any], endpoint: str, received_at: int, source: Source
    ) -> list[Touchpoint]:
        """Every message of the request as a touchpoint, or a ``Reject`` for the whole
        request: nothing is published unless everything is valid."""
        try:
            if endpoint != "batch":
                tp = segment.to_touchpoint(
                    body, kind=endpoint, received_at=received_at, source=source
                )
                found = [tp]
            else:
                found = self._batch(body, received_at, source)
        except segment.InvalidMessage as exc:
            raise Reject(400, "invalid_request", str(exc)) from None
        out = [tp for tp in found if tp is not None]
        if len(out) < len(found):
            metrics.SKIPPED.inc(len(found) - len(out))
        return out

    def _batch(
        self, body: dict[str, Any], received_at: int, source: Source
    ) -> list[Touchpoint | None]:
        messages = body.get("batch")
        if not isinstance(messages, list):
            raise segment.InvalidMessage("a batch needs a batch array of messages")
        context = body.get("context")
        if context is not None and not isinstance(context, dict):
            raise segment.InvalidMessage("the batch's context must be an object")
        out: list[Touchpoint | None] = []
        for i, message in enumerate(messages):
            size = len(orjson.dumps(message))
            if size > payload.MESSAGE_LIMIT:
                raise Reject(
                    400,
                    "payload_too_large",
                    f"batch[{i}]: message too large: {size} bytes "
                    f"(limit {payload.MESSAGE_LIMIT} per message)",
                )
            out.append(
                segment.to_touchpoint(
                    message,
                    kind=None,
                    received_at=received_at,
                    source=source,
                    sent_at=body.get("sentAt"),
                    context=context,
                    index=i,
                )
            )
        return out

    def _records(
        self, touchpoints: list[Touchpoint], source: Source
    ) -> list[tuple[Touchpoint, Record]]:
        """Encoded before anything is sent (an encoding failure rejects the request
        whole), less the events this process already had acknowledged."""
        topic = self.config.topics.touchpoints
        out: list[tuple[Touchpoint, Record]] = []
        seen: set[str] = set()
        for tp in touchpoints:
            if tp.event_id in seen or _dedup_key(source, tp.event_id) in self.recent:
                metrics.DUPLICATES.inc()
                continue
            seen.add(tp.event_id)
            try:
                value = wire.encode_touchpoint(tp)
            except (ValueError, TypeError) as exc:
                raise Reject(400, "invalid_request", f"cannot encode an event: {exc}") from None
            out.append((tp, Record(topic, tp.subject.encode(), value)))
        return out

    async def _preflight(self, _request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _health(self, _request: web.Request) -> web.Response:
        if self.producer is None or self.producer.fatal is not None:
            return web.json_response({"status": "failing"}, status=503)
        return web.json_response({"status": "ok"})

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _add_cors(_request: web.Request, response: web.StreamResponse) -> None:
    """Browser SDKs post cross-origin; answers must be readable by them."""
    response.headers.update(_CORS)


def _basic_username(header: str | None) -> str | None:
    """The write key of ``Authorization: Basic base64(key:)``; "" if the header is
    there but unreadable (answered 401), None if there is none."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0]


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dedup_key(source: Source, event_id: str) -> str:
    return f"{source.name}\x1f{event_id}"


def _from(exc: payload.PayloadError) -> Reject:
    return Reject(400, exc.code, exc.message)


# -- running it -----------------------------------------------------------------------


class RunningIngest:
    """An ``HttpIngest`` served by a background thread's event loop (tests, benches)."""

    def __init__(self, config: HttpIngestConfig) -> None:
        self.ingest = HttpIngest(config)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rota-ingest-http", daemon=True)

    @property
    def url(self) -> str:
        return self.ingest.url

    def start(self, timeout: float = 15.0) -> RunningIngest:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the HTTP ingest did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.ingest.stop(), self._loop).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.ingest.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()


@contextlib.contextmanager
def running(config: HttpIngestConfig) -> Iterator[RunningIngest]:
    server = RunningIngest(config).start()
    try:
        yield server
    finally:
        server.stop()


async def serve(config: HttpIngestConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then drain requests in flight and stop."""
    ingest = HttpIngest(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await ingest.start()
    if on_ready is not None:
        on_ready(url)
    try:
        await stop.wait()
    finally:
        await ingest.stop()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rota ingest serve",
        description="Segment-compatible HTTP Tracking API publishing touchpoints to Kafka.",
    )
    p.add_argument("--host", help="listen address (default ROTA_INGEST_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default ROTA_INGEST_PORT or 8088)")
    p.add_argument("--loglevel", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from confluent_kafka import KafkaException

    from orchestrator.settings import SettingsError
    from orchestrator.topics import ensure_topics

    try:
        config = HttpIngestConfig.from_env(host=args.host, port=args.port)
    except (SettingsError, ValueError) as exc:
        print(f"rota ingest serve: {exc}", file=sys.stderr)
        return 2
    try:
        ensure_topics(config.bootstrap, [config.topics.touchpoints], partitions=config.partitions)
    except (KafkaException, TimeoutError) as exc:
        reason = str(exc) or "no answer in time"
        print(
            f"rota ingest serve: cannot reach Kafka at {config.bootstrap}: {reason}",
            file=sys.stderr,
        )
        return 1

    def ready(url: str) -> None:
        print(f"rota ingest: listening on {url}", flush=True)

    try:
        import uvloop

        uvloop.run(serve(config, on_ready=ready))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(config, on_ready=ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
