"""Prometheus metrics of the ingest (catalogue in the README). Labels are bounded:
endpoints, status codes, touchpoint types and reject reasons - never a customer id,
a write key or a source's payload."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "rota_ingest_requests",
    "HTTP ingest requests answered, by endpoint (track, ..., batch) and status code.",
    ["endpoint", "status"],
)
EVENTS = Counter(
    "rota_ingest_events",
    "Events accepted by the HTTP ingest (acknowledged by Kafka), by touchpoint type.",
    ["type"],
)
REJECTS = Counter(
    "rota_ingest_rejects",
    "HTTP ingest requests refused, by reason: invalid_json, invalid_request, "
    "payload_too_large, invalid_encoding, unsupported_encoding, unauthorized, "
    "kafka_unavailable.",
    ["reason"],
)
DUPLICATES = Counter(
    "rota_ingest_duplicates",
    "Events answered 200 without publishing: their messageId was acknowledged recently.",
)
SKIPPED = Counter(
    "rota_ingest_skipped",
    'Events accepted but not published because they said integrations: {"Rota": false}.',
)
REQUEST_SECONDS = Histogram(
    "rota_ingest_request_seconds",
    "HTTP ingest request latency, from the request's arrival to the answer (includes "
    "waiting for Kafka's acknowledgement).",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CLOUDEVENTS = Counter(
    "rota_ingest_cloudevents",
    "CloudEvents read from the ingest topic, by result: converted or deadlettered.",
    ["result"],
)
CLOUDEVENT_REJECTS = Counter(
    "rota_ingest_cloudevents_rejects",
    "CloudEvents sent to the dead-letter topic, by reason.",
    ["reason"],
)
