"""Ingest: events from systems that already exist, taken as they are.

- ``http``: a Segment-compatible HTTP Tracking API (``/v1/track`` ... ``/v1/batch``) for
  web sites and apps instrumented with Segment or RudderStack SDKs;
  ``segment`` maps their messages to touchpoints (pure).
- ``cloudevents_bridge``: CloudEvents 1.0 on a Kafka ingest topic, from channel
  services; ``cloudevents`` converts them (pure).
- ``load``: a load generator measuring what the HTTP ingest sustains.

Everything lands on ``<prefix>.touchpoints`` in the Avro schema of ``schemas/``, and is
acknowledged to its sender only after Kafka acknowledged it.
"""
