"""``rota run``: the whole system on one machine, for a first look and for demos.

Starts (or uses) a broker, creates the topics, starts a worker and the connectors as
child processes, a local HTTP endpoint standing in for a channel service behind the
webhook connector, and demo traffic. Shows progress from the processes' own
``/metrics``; on Ctrl-C or after ``--duration`` seconds it lets the worker drain, stops
everything in order and prints a summary.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import Popen
from urllib.request import urlopen

from prometheus_client.parser import text_string_to_metric_families

from orchestrator import broker as brokers
from orchestrator.broker import free_port
from orchestrator.clock import Clock
from orchestrator.demo.audience import DemoAudience
from orchestrator.demo.traffic import DemoTraffic
from orchestrator.journey.catalog import load_catalog
from orchestrator.processes import spawn, tail, terminate
from orchestrator.records import CHANNELS
from orchestrator.settings import Settings
from orchestrator.topics import ensure_topics

#: The demo's webhook endpoint stands in for a CRM that takes call-centre tasks; the log
#: connector stands in for the email, SMS and push providers.
WEBHOOK_CHANNELS = ("webhook", "call_centre")
LOG_CHANNELS = ("email", "sms", "push", "in_app", "log")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, timeout: float = 2.0) -> Samples:
    """Parse a Prometheus text exposition into {(sample name, labels): value}."""
    with urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == want for k, want in match.items())
    )


class WebhookSink:
    """A stand-in channel service: accepts the webhook connector's POSTs."""

    def __init__(self) -> None:
        self.received = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/actions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Child:
    name: str
    proc: Popen[bytes]
    log: Path
    metrics_url: str | None = None
    last: Samples = field(default_factory=dict)

    def refresh(self) -> Samples:
        if self.metrics_url:
            with contextlib.suppress(OSError):
                self.last = scrape(self.metrics_url)
        return self.last


def run(
    settings: Settings,
    *,
    duration: float = 0,
    rate: float = 300,
    customers: int = 5000,
    clock_speed: float = 7200,
) -> int:
    catalog = load_catalog([settings.journeys])  # fail fast on a bad journey
    run_dir = Path(".rota") / "run" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock(clock_speed, int(time.time() * 1000))
    print(f"rota run: {len(catalog)} journeys from {settings.journeys}, logs in {run_dir}")
    if clock_speed != 1:
        print(f"demo clock: 1 s = {clock_speed:g} s of journey time (waits fire sooner)")
    print("starting Kafka ...", flush=True)
    with brokers.running() as broker:
        print(f"broker: {broker.describe()}")
        ensure_topics(
            broker.bootstrap, settings.topics.all_for(CHANNELS), partitions=settings.partitions
        )
        sink = WebhookSink()
        worker_metrics, connector_metrics = free_port(), free_port()
        env = {
            **os.environ,
            "ROTA_KAFKA_BOOTSTRAP": broker.bootstrap,
            "ROTA_TOPIC_PREFIX": settings.topic_prefix,
            "ROTA_PARTITIONS": str(settings.partitions),
            "ROTA_JOURNEYS": str(settings.journeys),
            "ROTA_CLOCK_SPEED": str(clock.speed),
            "ROTA_CLOCK_ORIGIN_MS": str(clock.origin_ms),
            "PYTHONUNBUFFERED": "1",
        }
        rota = [sys.executable, "-m", "orchestrator.cli"]
        children = [
            Child(
                "worker",
                spawn(
                    [*rota, "worker"],
                    log_path=run_dir / "worker.log",
                    env={
                        **env,
                        "ROTA_DATA_DIR": str(run_dir / "worker-0"),
                        "ROTA_METRICS_PORT": str(worker_metrics),
                    },
                ),
                run_dir / "worker.log",
                f"http://127.0.0.1:{worker_metrics}/metrics",
            ),
            Child(
                "connectors",
                spawn(
                    [*rota, "connector", "run", "webhook", "log"],
                    log_path=run_dir / "connectors.log",
                    env={
                        **env,
                        "ROTA_WEBHOOK_URL": sink.url,
                        "ROTA_LOG_CHANNELS": ",".join(LOG_CHANNELS),
                        "ROTA_WEBHOOK_CHANNELS": ",".join(WEBHOOK_CHANNELS),
                        "ROTA_CONNECTOR_METRICS_PORT": str(connector_metrics),
                    },
                ),
                run_dir / "connectors.log",
                f"http://127.0.0.1:{connector_metrics}/metrics",
            ),
        ]
        print(f"metrics: worker {children[0].metrics_url}  connectors {children[1].metrics_url}")
        traffic = DemoTraffic(customers=customers, clock=clock)
        stop = threading.Event()
        producer = threading.Thread(
            target=traffic.run,
            args=(broker.bootstrap, settings.topics.touchpoints),
            kwargs={"rate": rate, "stop": stop},
            daemon=True,
        )
        producer.start()
        audience = DemoAudience(clock=clock)
        reacting = threading.Thread(
            target=audience.run,
            args=(broker.bootstrap, settings.topics, ("email", "push"), stop),
            daemon=True,
        )
        reacting.start()
        print(
            f"demo traffic: {customers} customers, ~{rate:g} events/s"
            + (f", for {duration:g} s" if duration else ", Ctrl-C to stop")
        )
        started = time.monotonic()
        failed: Child | None = None
        try:
            while not duration or time.monotonic() - started < duration:
                time.sleep(2)
                failed = next((c for c in children if c.proc.poll() is not None), None)
                if failed:
                    break
                _progress(time.monotonic() - started, traffic.stats.published, children, sink)
        except KeyboardInterrupt:
            print("\nstopping ...")
        stop.set()
        producer.join(timeout=30)
        reacting.join(timeout=30)
        if not failed:
            _drain(traffic.stats.published, children, sink)
        for child in reversed(children):
            child.refresh()
        for child in reversed(children):
            terminate(child.proc)
        sink.close()
    if failed:
        print(
            f"\n{failed.name} exited with code {failed.proc.returncode}; last lines of "
            f"{failed.log}:\n{tail(failed.log)}",
            file=sys.stderr,
        )
    _summary(time.monotonic() - started, traffic, children, sink)
    return 1 if failed else 0


def _counts(children: list[Child]) -> dict[str, float]:
    w, c = children[0].last, children[1].last
    return {
        "consumed": total(w, "rota_events_consumed_total"),
        "actions": total(w, "rota_actions_emitted_total"),
        "dead": total(w, "rota_deadletter_total"),
        "fired": total(w, "rota_timers_fired_total"),
        "delivered": total(c, "rota_connector_deliveries_total", result="delivered"),
    }


def _progress(elapsed: float, published: int, children: list[Child], sink: WebhookSink) -> None:
    for child in children:
        child.refresh()
    n = _counts(children)
    print(
        f"[{elapsed:5.0f}s] demo published {published:,} | consumed {n['consumed']:,.0f}"
        f" | dead-lettered {n['dead']:,.0f} | actions {n['actions']:,.0f}"
        f" | timers fired {n['fired']:,.0f} | delivered {n['delivered']:,.0f}",
        flush=True,
    )


def _drain(published: int, children: list[Child], sink: WebhookSink, timeout: float = 20) -> None:
    """Let the worker catch up with what was published, then the connectors with the
    actions emitted by then (timers keep firing meanwhile; that is not waited for)."""
    deadline = time.monotonic() + timeout
    print("draining ...", flush=True)
    target: float | None = None
    while time.monotonic() < deadline:
        for child in children:
            child.refresh()
        n = _counts(children)
        if target is None and n["consumed"] + n["dead"] >= published:
            target = n["actions"]
        if target is not None and n["delivered"] >= target:
            return
        time.sleep(0.5)


def _summary(
    elapsed: float, traffic: DemoTraffic, children: list[Child], sink: WebhookSink
) -> None:
    w, c = children[0].last, children[1].last
    n = _counts(children)
    print("\n=== rota run summary ===")
    print(
        f"ran {elapsed:.0f} s; published {traffic.stats.published:,} touchpoints "
        f"({traffic.stats.malformed} deliberately malformed)"
    )
    print(
        f"events consumed:  {n['consumed']:,.0f}  ("
        + ", ".join(
            f"{dict(k)['type']}={v:,.0f}"
            for (name, k), v in sorted(w.items())
            if name == "rota_events_consumed_total"
        )
        + "; outcomes are the connectors' reports)"
    )
    print(
        f"dead-lettered:    {n['dead']:,.0f}"
        + "".join(
            f"  {dict(k)['reason']}={v:,.0f}"
            for (name, k), v in sorted(w.items())
            if name == "rota_deadletter_total"
        )
    )
    print(f"timers fired:     {n['fired']:,.0f}")
    by: dict[tuple[str, str], float] = defaultdict(float)
    for (name, labels), v in w.items():
        if name == "rota_actions_emitted_total":
            d = dict(labels)
            by[(d["journey"], d["channel"])] += v
    print(f"actions emitted:  {n['actions']:,.0f}")
    if by:
        width = max(len(j) for j, _ in by)
        for (journey, channel), v in sorted(by.items()):
            print(f"  {journey:<{width}}  {channel:<12} {v:>8,.0f}")
    for metric, what in (
        ("rota_actions_deferred_total", "deferred by the contact policy"),
        ("rota_actions_suppressed_total", "dropped by the contact policy"),
    ):
        reasons: dict[str, float] = defaultdict(float)
        for (name, labels), v in w.items():
            if name == metric:
                reasons[dict(labels)["reason"]] += v
        if reasons:
            detail = "  ".join(f"{r}={v:,.0f}" for r, v in sorted(reasons.items()))
            print(f"{what}: {sum(reasons.values()):,.0f}  {detail}")
    results: dict[str, float] = defaultdict(float)
    for (name, labels), v in c.items():
        if name == "rota_connector_deliveries_total":
            d = dict(labels)
            results[f"{d.get('connector')}/{d.get('result')}"] += v
    print(
        "deliveries:       "
        + ("  ".join(f"{k}={v:,.0f}" for k, v in sorted(results.items())) or "none")
    )
    print(f"webhook endpoint (stand-in CRM for call-centre tasks) received {sink.received:,} POSTs")
