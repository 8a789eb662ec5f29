"""The ``rota`` command. Each subcommand is a thin adapter over one module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from orchestrator.kafka_security import producer_config
from orchestrator.settings import Settings, SettingsError

USAGE = """rota <command> [options]

commands:
  run         the whole system locally: broker, worker, connectors, demo traffic, metrics
  worker      run one stream worker (joins the cluster at ROTA_KAFKA_BOOTSTRAP)
  validate    check journey files: rota validate PATH...
  simulate    run journeys offline over a JSON-lines file of touchpoints
  connector   list or run channel connectors: rota connector list | run NAME...
  demo        publish demo traffic to ROTA_KAFKA_BOOTSTRAP
  deadletter  list dead letters, or replay them to their source topics after a fix
  deploy      validate journey files and deploy them to running workers
  journeys    list | pause ID | resume ID | archive ID  (journeys live on the cluster)
              graph ID: draw a journey from its file (Mermaid, DOT, SVG; no cluster)
  forget      erase a customer: rota forget CUSTOMER_ID...
  report      funnels, split tests against the holdout, attribution: rota report [--journey ID]
  feedback    receive provider callbacks: rota feedback serve
  ingest      rota ingest serve | cloudevents  (Segment HTTP API; CloudEvents bridge)
  bench       measure throughput, latency, timers, recovery, memory: rota bench [--quick] [--out F]

`rota <command> --help` tells more. Configuration: ROTA_* environment variables (README).
"""


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rota run", description="Broker, worker, connectors and demo traffic, locally."
    )
    p.add_argument("--duration", type=float, default=0, help="seconds; 0 = until Ctrl-C")
    p.add_argument("--rate", type=float, default=300, help="demo touchpoints per second")
    p.add_argument("--customers", type=int, default=5000, help="demo population size")
    p.add_argument(
        "--clock-speed",
        type=float,
        default=7200,
        help="journey seconds per real second (default 7200: a day's wait takes 12 s)",
    )
    args = p.parse_args(argv)
    from orchestrator.run import run

    return run(
        Settings.from_env(),
        duration=args.duration,
        rate=args.rate,
        customers=args.customers,
        clock_speed=args.clock_speed,
    )


def _worker(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rota worker", description="Run one stream worker.")
    p.add_argument("--loglevel", default="warning")
    args = p.parse_args(argv)
    from orchestrator.worker.main import run_worker

    return run_worker(Settings.from_env(), loglevel=args.loglevel)


def _validate(argv: list[str]) -> int:
    from orchestrator.journey.validate import main

    return main(argv)


def _simulate(argv: list[str]) -> int:
    from orchestrator.simulate import main

    return main(argv)


def _connector(argv: list[str]) -> int:
    from connectors.cli import main

    return main(argv)


def _deadletter(argv: list[str]) -> int:
    from orchestrator.deadletter import main

    return main(argv)


def _deploy(argv: list[str]) -> int:
    from orchestrator.deployments import deploy_main

    return deploy_main(argv)


def _journeys(argv: list[str]) -> int:
    if argv[:1] == ["graph"]:  # reads journey files: must work without a cluster
        from orchestrator.journey.graph_cli import main

        return main(argv[1:])
    from orchestrator.deployments import journeys_main

    return journeys_main(argv)


def _forget(argv: list[str]) -> int:
    import time
    import uuid

    from confluent_kafka import Producer

    from orchestrator import wire
    from orchestrator.records import Touchpoint
    from orchestrator.worker.process import FORGET_EVENT

    p = argparse.ArgumentParser(
        prog="rota forget",
        description="Erase customers: profile, journey state and timers; later events "
        f"for them are ignored. Publishes a {FORGET_EVENT!r} touchpoint per customer.",
    )
    p.add_argument("customers", nargs="+", metavar="CUSTOMER_ID")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    producer = Producer({**producer_config(settings.bootstrap()), "acks": "all"})
    failed: list[str] = []
    for customer in args.customers:
        tp = Touchpoint(
            event_id=str(uuid.uuid4()),
            type="track",
            name=FORGET_EVENT,
            channel="crm",
            occurred_at=int(time.time() * 1000),
            customer_id=customer,
            source="rota forget",
        )
        producer.produce(
            settings.topics.touchpoints,
            key=customer.encode(),
            value=wire.encode_touchpoint(tp),
            on_delivery=lambda err, _m: failed.append(str(err)) if err else None,
        )
    if producer.flush(30) or failed:
        print(f"rota forget: publishing failed: {failed[:3]}", file=sys.stderr)
        return 1
    print(f"requested erasure of {len(args.customers)} customer(s)")
    return 0


def _report(argv: list[str]) -> int:
    from orchestrator.report_cli import main

    return main(argv)


def _feedback(argv: list[str]) -> int:
    from connectors.cli import feedback_main

    return feedback_main(argv)


def _bench(argv: list[str]) -> int:
    if argv[:1] == ["ingest"]:
        from orchestrator.ingest.load import main as ingest_load

        return ingest_load(argv[1:])
    from orchestrator.bench import main

    return main(argv)


def _ingest(argv: list[str]) -> int:
    import importlib

    modules = {
        "serve": "orchestrator.ingest.http",
        "cloudevents": "orchestrator.ingest.cloudevents_bridge",
    }
    if not argv or argv[0] not in modules:
        print("usage: rota ingest serve|cloudevents [options]", file=sys.stderr)
        return 2
    main: Callable[[list[str]], int] = importlib.import_module(modules[argv[0]]).main
    return main(argv[1:])


def _demo(argv: list[str]) -> int:
    import threading

    p = argparse.ArgumentParser(prog="rota demo", description="Publish demo touchpoints.")
    p.add_argument("--rate", type=float, default=300)
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--duration", type=float, default=10)
    args = p.parse_args(argv)
    settings = Settings.from_env()
    bootstrap = settings.bootstrap()
    from orchestrator.demo.traffic import DemoTraffic

    stop = threading.Event()
    threading.Timer(args.duration, stop.set).start()
    stats = DemoTraffic(customers=args.customers).run(
        bootstrap, settings.topics.touchpoints, rate=args.rate, stop=stop
    )
    print(
        f"published {stats.published} touchpoints ({stats.malformed} malformed, "
        f"{stats.failed} failed)"
    )
    return 1 if stats.failed else 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "worker": _worker,
    "validate": _validate,
    "simulate": _simulate,
    "connector": _connector,
    "demo": _demo,
    "deadletter": _deadletter,
    "deploy": _deploy,
    "journeys": _journeys,
    "forget": _forget,
    "report": _report,
    "feedback": _feedback,
    "bench": _bench,
    "ingest": _ingest,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"rota: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return command(argv[1:])
    except SettingsError as exc:
        print(f"rota {argv[0]}: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
