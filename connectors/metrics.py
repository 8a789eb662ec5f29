"""The connectors' Prometheus metrics (default registry; catalogue in the README).

Labels are bounded: connector names, results, reasons - never a customer id. The dead
letter counter is connector-specific (``rota_connector_deadletter_total``) so it cannot
collide with the worker's ``rota_deadletter_total`` when both run in one process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # as the worker's (orchestrator/metrics.py): no *_created series

ACTIONS_CONSUMED = Counter(
    "rota_connector_actions_consumed",
    "Records read from the connector's action topics (undecodable ones included).",
    ["connector"],
)
DELIVERIES = Counter(
    "rota_connector_deliveries",
    "Actions by final result: delivered, failed, rejected, expired or duplicate.",
    ["connector", "result"],
)
DELIVERY_SECONDS = Histogram(
    "rota_connector_delivery_seconds",
    "Wall time of one delivery attempt (one call of the connector's deliver).",
    ["connector"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RETRIES = Counter("rota_connector_retries", "Delivery attempts after the first one.", ["connector"])
DEADLETTERED = Counter(
    "rota_connector_deadletter",
    "Records the connector sent to the dead-letter topic, by reason.",
    ["connector", "reason"],
)
IN_FLIGHT = Gauge(
    "rota_connector_in_flight",
    "Actions consumed and not yet finished (delivering, waiting to retry, queued).",
    ["connector"],
)
CIRCUIT_STATE = Gauge(
    "rota_connector_circuit_state",
    "The connector's circuit breaker: 0 closed, 1 half-open (probing), 2 open (not calling).",
    ["connector"],
)
RATE_LIMIT_WAIT = Counter(
    "rota_connector_rate_limit_wait_seconds",
    "Seconds delivery threads waited for a token of the channel's rate limit.",
    ["connector", "channel"],
)
FEEDBACK_EVENTS = Counter(
    "rota_feedback_events",
    "Provider callback events received by rota feedback serve, by provider and result "
    "(published, ignored, unattributed).",
    ["provider", "result"],
)
FEEDBACK_REQUESTS = Counter(
    "rota_feedback_requests",
    "Provider callback requests, by provider and HTTP status answered.",
    ["provider", "status"],
)
