"""``rota bench ingest``: what the HTTP ingest sustains, in requests/s and events/s.

Drives a running ingest (``--url``, ``--write-key``) or, with ``--local``, starts an
embedded broker and an ingest process of its own first. ``--concurrency`` clients post
for ``--duration`` seconds, either Segment batches of ``--batch`` events (what SDKs
send) or single ``/v1/track`` calls (``--batch 0``). Every event carries a fresh
``messageId``, so nothing is short-circuited by de-duplication, and only 200s count:
each is an event Kafka acknowledged. The generator shares the machine with the server
and the broker; the numbers are a floor for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp

WRITE_KEY = "bench-key"


@dataclass
class LoadResult:
    seconds: float
    requests: int
    events: int
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 2),
            "ok_requests": self.requests,
            "ok_events": self.events,
            "requests_per_s": round(self.requests_per_second, 1),
            "events_per_s": round(self.events_per_second, 1),
            "latency_ms_p50": round(self.percentile(0.50) * 1000, 2),
            "latency_ms_p99": round(self.percentile(0.99) * 1000, 2),
            "statuses": dict(self.statuses),
        }


def _event(seq: Iterator[int], worker: int) -> dict[str, object]:
    n = next(seq)
    return {
        "type": "track",
        "userId": f"bench-{n % 10_000:05d}",
        "event": "Product Viewed",
        "messageId": f"bench-{os.getpid()}-{worker}-{n}",
        "properties": {"sku": f"sku-{n % 97}", "price": 19.5, "currency": "EUR"},
        "context": {"library": {"name": "analytics.js", "version": "bench"}},
        "timestamp": "2024-01-01T00:00:00.000Z",
    }


async def run_load(
    url: str, *, write_key: str, duration: float, concurrency: int, batch: int
) -> LoadResult:
    """Post for ``duration`` seconds with ``concurrency`` clients; count the 200s."""
    result = LoadResult(seconds=0.0, requests=0, events=0)
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}  # the write key, as SDKs send it
    path = "/v1/batch" if batch else "/v1/track"
    per_request = batch or 1
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    started = time.perf_counter()
    deadline = started + duration

    async def client(session: aiohttp.ClientSession, worker: int) -> None:
        seq = itertools.count()
        while time.perf_counter() < deadline:
            if batch:
                body: object = {"batch": [_event(seq, worker) for _ in range(batch)]}
            else:
                body = _event(seq, worker)
            t0 = time.perf_counter()
            async with session.post(f"{url}{path}", json=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
            result.statuses[status] += 1
            if status == 200:
                result.latencies.append(time.perf_counter() - t0)
                result.requests += 1
                result.events += per_request

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session, w) for w in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


@contextmanager
def local_ingest(port: int | None = None) -> Iterator[str]:
    """An embedded broker and an ingest process (its own CPU, as in production)."""
    import tempfile
    import urllib.request

    from orchestrator.broker import free_port, start_embedded
    from orchestrator.processes import spawn, tail, terminate

    broker = start_embedded()
    port = port or free_port()
    fd, log_path = tempfile.mkstemp(prefix="rota-ingest-bench-", suffix=".log")
    os.close(fd)
    env = {
        **os.environ,
        "ROTA_KAFKA_BOOTSTRAP": broker.bootstrap,
        "ROTA_TOPIC_PREFIX": "bench",
        "ROTA_PARTITIONS": "4",
        "ROTA_INGEST_WRITE_KEYS": f"{WRITE_KEY}:web",
        "ROTA_INGEST_HOST": "127.0.0.1",
        "ROTA_INGEST_PORT": str(port),
    }
    proc = spawn(
        [sys.executable, "-m", "orchestrator.ingest.http", "--loglevel", "warning"],
        log_path=log_path,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest did not start:\n{tail(log_path)}")
            time.sleep(0.1)
        yield url
    finally:
        terminate(proc)
        broker.close()
        if os.path.exists(log_path):
            os.unlink(log_path)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rota bench ingest", description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of a running ingest, e.g. http://host:8088")
    where.add_argument("--local", action="store_true", help="start a broker and an ingest")
    p.add_argument("--write-key", default=os.environ.get("ROTA_BENCH_WRITE_KEY", WRITE_KEY))
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    p.add_argument("--concurrency", type=int, default=16, help="clients posting at once")
    p.add_argument("--batch", type=int, default=50, help="events per batch; 0 = /v1/track")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    def load(url: str) -> LoadResult:
        return asyncio.run(
            run_load(
                url,
                write_key=args.write_key if args.url else WRITE_KEY,
                duration=args.duration,
                concurrency=args.concurrency,
                batch=args.batch,
            )
        )

    if args.local:
        with local_ingest() as url:
            result = load(url)
    else:
        result = load(args.url.rstrip("/"))
    summary = {"batch": args.batch, "concurrency": args.concurrency, **result.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        kind = f"batches of {args.batch}" if args.batch else "single track calls"
        print(
            f"{kind}, {args.concurrency} clients, {summary['seconds']} s: "
            f"{summary['requests_per_s']} requests/s, {summary['events_per_s']} events/s "
            f"(acknowledged by Kafka); latency p50 {summary['latency_ms_p50']} ms, "
            f"p99 {summary['latency_ms_p99']} ms; statuses {summary['statuses']}"
        )
    return 0 if result.requests and set(result.statuses) == {200} else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
