"""``rota worker``: start one Faust worker process."""

from __future__ import annotations

import logging
import sys

from prometheus_client import start_http_server

from orchestrator import broker as brokers
from orchestrator import deployments, metrics
from orchestrator.broker import free_port
from orchestrator.journey.catalog import Catalog, DedupWindow
from orchestrator.journey.policy_file import load_policy
from orchestrator.journey.problems import JourneyValidationError
from orchestrator.records import CHANNELS
from orchestrator.settings import Settings
from orchestrator.topics import ensure_topics
from orchestrator.worker import collector
from orchestrator.worker.app import create_app
from orchestrator.worker.process import Processor

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, loglevel: str = "warning") -> int:
    """Run until SIGINT/SIGTERM. Needs ``ROTA_KAFKA_BOOTSTRAP``: a worker joins a
    cluster, it never starts a broker of its own."""
    bootstrap = settings.bootstrap()
    brokers.wait_until_ready(bootstrap, timeout=30.0)
    ensure_topics(bootstrap, settings.topics.all_for(CHANNELS), partitions=settings.partitions)
    deployments.ensure_topic(bootstrap, settings.topics.journeys)
    deployed = deployments.read_deployments(bootstrap, settings.topics.journeys)
    dedup = DedupWindow(settings.dedup_ids, int(settings.dedup_hours * 3_600_000))
    try:
        policy = load_policy(settings.policy_file(), CHANNELS)
        catalog = deployments.build_catalog([settings.journeys], deployed, dedup)
    except JourneyValidationError as exc:
        print(f"rota worker: invalid journeys or policy, not starting:\n{exc}", file=sys.stderr)
        return 2
    catalog = catalog.with_policy(policy)
    processor = Processor(catalog, settings.topics)
    metrics.JOURNEYS_LIVE.set(len(catalog))

    def on_change(new: Catalog) -> None:
        new = new.with_policy(policy)
        processor.catalog = new
        metrics.JOURNEYS_LIVE.set(len(new))
        metrics.JOURNEY_RELOADS.inc()

    deployments.DeploymentWatcher(
        bootstrap, settings.topics.journeys, [settings.journeys], deployed, on_change, dedup
    ).start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    web_port = settings.web_port or free_port()
    settings = Settings(**{**settings.__dict__, "web_port": web_port})
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - optional speed-up
        pass
    import faust

    app = create_app(settings, bootstrap, processor)

    @app.task
    async def quiet_libraries() -> None:
        # Faust's logging setup leaves the root logger at DEBUG (measured), so every
        # per-message debug call in aiokafka and Faust built a LogRecord: ~20 % of the
        # worker's time. Restore the requested level once the worker has started.
        level = logging.getLevelName(loglevel.upper())
        logging.root.setLevel(level)
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(level)

    @app.task
    async def settle_collector() -> None:
        frozen = collector.settle()
        log.info("garbage collector settled: %d objects frozen", frozen)

    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0
