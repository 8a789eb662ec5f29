"""The worker's HTTP API on Faust's web server: the customer inspector, the journeys
overview, the OpenAPI description, and readiness/liveness for Kubernetes.

Any worker answers any customer: Faust's router forwards the request to the worker that
owns the customer's partition (its ``ROTA_WEB_URL``), found with the same murmur2 hash
the producers use (``kafka_security.producer_config``). The answers themselves are built
by ``orchestrator.inspector`` from the state alone.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from orchestrator import inspector, metrics
from orchestrator.core.state import CustomerState
from orchestrator.worker.faust_context import load_partition_metadata
from orchestrator.worker.process import Processor


def install_web(app: faust.App, customers: Any, processor: Processor) -> None:
    """Register the API's routes on ``app`` (before it starts)."""
    changelog = customers.changelog_topic.get_topic_name()

    @app.table_route(table=customers, match_info="customer_id")
    async def owned(view: View, request: Request, customer_id: str) -> Response:
        key = customer_id.encode()
        raw = customers.get(key)
        if raw is None:
            return view.json(
                {"error": "no state for this customer (never seen, or forgotten)"}, status=404
            )
        try:
            state = CustomerState.from_bytes(bytes(raw))
        except ValueError:  # a marker kept next to states (erasure, merge, statistics)
            return view.json({"error": "not a customer"}, status=404)
        partition = app.producer.key_partition(changelog, key).partition
        return view.json(inspector.customer_view(state, processor.catalog, partition=partition))

    @app.page("/v1/customers/{customer_id}")
    async def customer(view: View, request: Request, customer_id: str) -> Response:
        # Routing hashes the key over the changelog's partitions, which the producer
        # knows only once it has fetched the topic's metadata (not yet, before the
        # worker's first write).
        await load_partition_metadata(app, changelog)
        return await owned(view, request, customer_id=customer_id)  # type: ignore[call-arg]

    @app.page("/v1/journeys")
    async def journeys(view: View, request: Request) -> Response:
        samples = [
            (s.labels, s.value)
            for family in metrics.FUNNEL.collect()
            for s in family.samples
            if s.name.endswith("_total")
        ]
        return view.json({"journeys": inspector.journeys_view(processor.catalog, samples)})

    @app.page("/openapi.json")
    async def openapi(view: View, request: Request) -> Response:
        return view.json(inspector.OPENAPI)

    @app.page("/ready")
    async def ready(view: View, request: Request) -> Response:
        """Ready once the worker has its partitions and their state: a rebalance in
        progress or a recovery still reading changelogs is 503."""
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if app.rebalancing or not recovered:
            return view.json({"ready": False, "recovered": recovered}, status=503)
        return view.json({"ready": True})

    @app.page("/live")
    async def live(view: View, request: Request) -> Response:
        return view.json({"live": True})
