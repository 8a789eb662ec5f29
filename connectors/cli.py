"""``rota connector list | run NAME...`` and ``rota feedback serve``: the command line.

``run`` starts one ``ConnectorRunner`` per named connector, each on its own thread and
in its own consumer group, until SIGINT/SIGTERM; then each drains, commits and prints
a one-line summary. Configuration is environment only (README table):
``ROTA_KAFKA_BOOTSTRAP`` (required), ``ROTA_TOPIC_PREFIX``, ``ROTA_SESSION_TIMEOUT_MS``,
``ROTA_CLOCK_SPEED``/``ROTA_CLOCK_ORIGIN_MS`` (shared with the worker), plus
``ROTA_CONNECTOR_METRICS_PORT`` (serve /metrics when set), ``ROTA_CONNECTOR_DATA_DIR``
(keep delivered action ids on disk, surviving restarts), ``ROTA_CONNECTOR_THREADS`` and
``ROTA_CONNECTOR_MAX_IN_FLIGHT`` (concurrency), ``ROTA_RATE_LIMIT_<CHANNEL>``
(``per_second[:burst]``), ``ROTA_CIRCUIT_FAILURES`` / ``ROTA_CIRCUIT_COOLDOWN``, and
each connector's own.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from connectors import config, registry
from connectors.base import ConfigError, Connector
from connectors.ledger import DeliveryLedger, MemoryLedger, RocksLedger
from connectors.runner import ConnectorRunner
from orchestrator.settings import Settings, SettingsError

USAGE = "rota connector list | rota connector run NAME [NAME...]"
FEEDBACK_USAGE = "rota feedback serve"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rota connector", description="Channel connectors.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,run}")
    commands.add_parser("list", help="installed connectors and the channels they serve")
    run = commands.add_parser("run", help="consume and deliver actions until stopped")
    run.add_argument("names", nargs="+", metavar="NAME", help="connector names (see list)")
    run.add_argument("--log-level", default="info", help="level of connectors.* logs")
    args = parser.parse_args(argv)
    if args.command == "list":
        return list_connectors(os.environ)
    return run_connectors(args.names, os.environ, log_level=args.log_level)


def list_connectors(env: Mapping[str, str]) -> int:
    found = registry.available()
    if not found:
        print("no connectors installed (is the rota package installed? pip install -e .)")
        return 1
    width = max(len(name) for name in found)
    for name, entry_point in found.items():
        try:
            connector = registry.load(name).from_config(env)
            channels = ", ".join(connector.channels)
            connector.close()
        except ConfigError as exc:
            channels = f"(not configured: {exc})"
        print(f"{name:<{width}}  {entry_point.value:<40}  {channels}")
    return 0


def run_connectors(
    names: list[str],
    env: Mapping[str, str],
    *,
    log_level: str = "info",
    stop: threading.Event | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); 0 = clean stop, 1 = a connector
    failed, 2 = bad configuration."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("connectors").setLevel(log_level.upper())
    try:
        settings = Settings.from_env(env)
        bootstrap = settings.bootstrap()
        connectors = [_build(name, env) for name in dict.fromkeys(names)]
        metrics_port = _port(env, "ROTA_CONNECTOR_METRICS_PORT")
        lanes = config.integer(env, "ROTA_CONNECTOR_THREADS", 8, maximum=256)
        in_flight = config.integer(env, "ROTA_CONNECTOR_MAX_IN_FLIGHT", 1000, maximum=1_000_000)
        circuit = config.circuit(env)
        limits = {c.name: config.rate_limits(env, c.channels) for c in connectors}
    except (SettingsError, ConfigError, registry.ConnectorNotFound) as exc:
        print(f"rota connector run: {exc}", file=sys.stderr)
        return 2
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    data_dir = env.get("ROTA_CONNECTOR_DATA_DIR", "").strip()
    runners = [
        ConnectorRunner(
            connector,
            bootstrap=bootstrap,
            topics=settings.topics,
            session_timeout_ms=settings.session_timeout_ms,
            ledger=_ledger(data_dir, connector.name),
            now_ms=settings.clock.now,
            delivery_threads=lanes,
            max_in_flight=in_flight,
            rate_limits=limits[connector.name],
            circuit=circuit,
        )
        for connector in connectors
    ]
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    errors: dict[str, BaseException] = {}

    def serve(runner: ConnectorRunner) -> None:
        try:
            runner.run(stop)
        except BaseException as exc:
            errors[runner.name] = exc
            stop.set()  # one connector down takes the process down: restart it whole

    threads = [
        threading.Thread(target=serve, args=(r,), name=f"rota-connector-{r.name}") for r in runners
    ]
    for thread in threads:
        thread.start()
    print(
        "connectors running: "
        + "; ".join(f"{r.name} <- {', '.join(r.source_topics)}" for r in runners),
        flush=True,
    )
    for runner in runners:
        for channel, limit in runner.rate_limits.items():
            print(f"connector {runner.name}: channel {channel} limited to {limit}", flush=True)
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)
    for runner in runners:
        failure = errors.get(runner.name)
        status = f"FAILED: {failure}" if failure else "stopped"
        print(f"connector {runner.name} {status}: {runner.stats.summary()}", flush=True)
    return 1 if errors else 0


def _build(name: str, env: Mapping[str, str]) -> Connector:
    try:
        return registry.load(name).from_config(env)
    except ConfigError as exc:
        raise ConfigError(exc.variable, f"{exc.problem} (connector {name})") from exc


def _ledger(data_dir: str, name: str) -> DeliveryLedger:
    if not data_dir:
        return MemoryLedger()
    return RocksLedger(Path(data_dir) / f"{name}-delivered")


def _port(env: Mapping[str, str], variable: str) -> int | None:
    raw = env.get(variable, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(variable, f"{raw!r} is not a port number")
    return int(raw)


def feedback_main(argv: list[str]) -> int:
    """``rota feedback serve``: receive provider callbacks until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="rota feedback",
        description="Receive provider callbacks (SendGrid events, Twilio status, one-click "
        "unsubscribes) and publish them as touchpoints.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve}")
    serve = commands.add_parser("serve", help="run the HTTP receiver until stopped")
    serve.add_argument("--log-level", default="info", help="level of connectors.* logs")
    args = parser.parse_args(argv)
    return serve_feedback(os.environ, log_level=args.log_level)


def serve_feedback(
    env: Mapping[str, str],
    *,
    log_level: str = "info",
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> int:
    """Run the receiver; 0 = clean stop, 2 = bad configuration. ``ready`` is set once
    it listens (tests)."""
    from connectors.feedback.server import FeedbackServer, FeedbackSettings, Publisher

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("connectors").setLevel(log_level.upper())
    try:
        settings = Settings.from_env(env)
        bootstrap = settings.bootstrap()
        feedback = FeedbackSettings.from_env(env)
    except (SettingsError, ConfigError) as exc:
        print(f"rota feedback serve: {exc}", file=sys.stderr)
        return 2
    for warning in feedback.warnings():
        logging.getLogger("connectors.feedback").warning("%s", warning)
    server = FeedbackServer(
        feedback,
        Publisher(bootstrap, settings.topics.touchpoints),
        now_ms=settings.clock.now,
    )
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    print(
        f"feedback receiver on http://{feedback.host}:{server.port} -> "
        f"{settings.topics.touchpoints}",
        flush=True,
    )
    if ready is not None:
        ready.set()
    server.serve(stop)
    return 0
