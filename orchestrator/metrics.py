"""The worker's Prometheus metrics (catalogue in the README). Labels are bounded:
journey ids, steps, channels, reasons - never a customer id."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

#: No ``*_created`` series beside each counter and histogram: they doubled the lines of a
#: scrape (and its cost: ~9 -> ~5 ms of the worker's GIL per scrape with 50 journeys),
#: and no rule, alert or dashboard reads them.
disable_created_metrics()

EVENTS_CONSUMED = Counter(
    "rota_events_consumed", "Touchpoints consumed by the worker, by touchpoint type.", ["type"]
)
EVENTS_DUPLICATE = Counter(
    "rota_events_duplicate", "Touchpoints ignored because their event_id was already seen."
)
ACTIONS_EMITTED = Counter(
    "rota_actions_emitted",
    "Next-best-actions emitted, by journey and channel.",
    ["journey", "channel"],
)
ACTIONS_SUPPRESSED = Counter(
    "rota_actions_suppressed",
    "Actions the contact policy dropped, by journey, channel and reason (expired, "
    "unsubscribed, no_consent, unreachable, quiet_hours, frequency_cap).",
    ["journey", "channel", "reason"],
)
ACTIONS_DEFERRED = Counter(
    "rota_actions_deferred",
    "Actions the contact policy deferred, by journey, channel and reason (quiet_hours, "
    "frequency_cap); each goes out, or is judged again, when its time comes.",
    ["journey", "channel", "reason"],
)
DEADLETTERED = Counter(
    "rota_deadletter", "Records sent to the dead-letter topic, by reason.", ["reason"]
)
FUNNEL = Counter(
    "rota_journey_funnel",
    "Journey transitions: kind is entered, step, converted, exited or completed.",
    ["journey", "kind", "step"],
)
PROCESSING_SECONDS = Histogram(
    "rota_batch_processing_seconds",
    "Wall time to process one batch of touchpoints (decode, decide, state, emit).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
#: Finer between 50 and 250 ms, where a latency objective of ~100 ms sits: with only
#: 0.1 and 0.25 there, a p99 anywhere between was an interpolation across the bucket.
_LAG_BELOW_1S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5)
EVENT_LAG_SECONDS = Histogram(
    "rota_event_lag_seconds",
    "From a touchpoint's Kafka timestamp (publication) to the end of its processing.",
    buckets=(*_LAG_BELOW_1S, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TIMERS_SET = Counter("rota_timers_set", "Timers scheduled by journeys (waits, timeouts, silence).")
TIMERS_FIRED = Counter("rota_timers_fired", "Timers that came due and were handed to the core.")
TIMER_LATENESS_SECONDS = Histogram(
    "rota_timer_lateness_seconds",
    "How late a timer fired relative to its due time (worker clock).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
JOURNEYS_LIVE = Gauge("rota_journeys_live", "Journey versions loaded by this worker.")
TIMERS_PENDING = Gauge(
    "rota_timers_pending",
    "Timers waiting in the partition's index (RocksDB estimate; includes superseded ones "
    "that will fire as no-ops).",
    ["partition"],
)
STATE_CUSTOMERS = Gauge(
    "rota_state_customers",
    "Customers with state in the partition (RocksDB estimate).",
    ["partition"],
)
CONSUMER_LAG = Gauge(
    "rota_consumer_lag",
    "Records of the partition not yet processed by this worker: the high watermark the "
    "consumer last fetched minus the next offset to process (0 when caught up).",
    ["topic", "partition"],
)
PARTITIONS_ASSIGNED = Gauge("rota_partitions_assigned", "Touchpoint partitions this worker owns.")
CHANGELOG_RECOVERED = Counter(
    "rota_changelog_records_recovered",
    "Changelog records applied in bulk to this worker's RocksDB tables when it took over "
    "partitions (recovery), by table.",
    ["table"],
)
REBALANCES = Counter("rota_rebalances", "Consumer-group rebalances this worker took part in.")
IDENTITIES_MERGED = Counter(
    "rota_identities_merged",
    "Anonymous visitors merged into a known customer (identity stitching).",
)
JOURNEY_RELOADS = Counter(
    "rota_journey_reloads", "Times a live deploy replaced this worker's journeys."
)
FORGOTTEN = Counter("rota_customers_forgotten", "Customers erased on request.")
SUPPRESSED_FORGOTTEN = Counter(
    "rota_events_suppressed_forgotten", "Touchpoints ignored because their customer was erased."
)

WORKER_SECONDS = Counter(
    "rota_worker_seconds",
    "Wall time of the worker's batch loop by phase - receive: between batches (waiting "
    "for records; Faust fetching and delivering them; the batch before being written in "
    "the background meanwhile); decide: decoding and deciding; wait: waiting for the "
    "batch before to be acknowledged by Kafka and written. rate() = share.",
    ["phase"],
)
#: The phases of ``WORKER_SECONDS``, in the order of the batch loop.
WORKER_PHASES = ("receive", "decide", "wait")

_children: dict[tuple[Counter, tuple[str, ...]], Any] = {}


class Tally:
    """Counter increments and histogram observations gathered over one batch and
    added at its end, once per counter and label set and per histogram bucket:
    prometheus_client takes a lock and checks the labels on every increment, and the
    worker counts several things per event."""

    __slots__ = ("_counts", "_observed")

    def __init__(self) -> None:
        self._counts: dict[tuple[Counter, tuple[str, ...]], int] = {}
        self._observed: dict[Histogram, list[float]] = {}

    def add(self, counter: Counter, *labels: str) -> None:
        key = (counter, labels)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def observe(self, histogram: Histogram, value: float) -> None:
        """``histogram.observe(value)``, at ``publish`` (an unlabelled histogram)."""
        values = self._observed.get(histogram)
        if values is None:
            values = self._observed[histogram] = []
        values.append(value)

    def publish(self) -> None:
        """Add what was counted and observed to the metrics, and start again."""
        for key, n in self._counts.items():
            child = _children.get(key)
            if child is None:
                counter, labels = key
                child = _children[key] = counter.labels(*labels) if labels else counter
            child.inc(n)
        self._counts.clear()
        for histogram, values in self._observed.items():
            observe_all(histogram, values)
        self._observed.clear()


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe`` of each of ``values`` (an unlabelled histogram, no
    exemplars), in one go: an observation takes prometheus_client ~10,000
    instructions, two locks for its bucket and sum; here each bucket's count and the
    sum are added once. The bucket of a value is the first whose bound is >= it, as
    ``observe`` picks it (its ``_upper_bounds``, ``_buckets`` and ``_sum`` have been the
    same since 0.4; ``tests/test_metrics_tally.py`` holds them to ``observe``)."""
    if not values:
        return
    bounds = histogram._upper_bounds
    counts: dict[int, int] = {}
    for value in values:
        i = bisect_left(bounds, value)
        counts[i] = counts.get(i, 0) + 1
    buckets = histogram._buckets
    for i, n in counts.items():
        buckets[i].inc(n)
    histogram._sum.inc(sum(values))
