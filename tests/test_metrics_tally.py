"""``metrics.Tally``: a batch's counts and observations reach the metrics once, when
published, as if each had been added on its own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from orchestrator.metrics import Tally, observe_all


def test_counts_reach_the_counters_only_when_published_and_only_once():
    registry = CollectorRegistry()
    plain = Counter("unit_plain", "plain", registry=registry)
    labelled = Counter("unit_labelled", "labelled", ["kind"], registry=registry)
    tally = Tally()
    tally.add(plain)
    tally.add(labelled, "a")
    tally.add(labelled, "a")
    tally.add(labelled, "b")
    assert registry.get_sample_value("unit_plain_total") == 0
    tally.publish()
    tally.publish()  # nothing new counted: nothing added
    assert registry.get_sample_value("unit_plain_total") == 1
    assert registry.get_sample_value("unit_labelled_total", {"kind": "a"}) == 2
    assert registry.get_sample_value("unit_labelled_total", {"kind": "b"}) == 1


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("unit_seconds", "h", buckets=(0.01, 0.1, 1.0, 10.0), registry=registry)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1.0, 100.0, allow_nan=False) | st.sampled_from([0.01, 1.0])))
def test_observations_published_at_once_expose_what_observing_each_would(values):
    """Values on a bucket's bound included: ``observe`` counts them in that bucket."""
    one_by_one, tallied, at_once = CollectorRegistry(), CollectorRegistry(), CollectorRegistry()
    each = _histogram(one_by_one)
    for value in values:
        each.observe(value)
    tally = Tally()
    tallied_histogram = _histogram(tallied)
    for value in values:
        tally.observe(tallied_histogram, value)
    assert tallied.get_sample_value("unit_seconds_count") == 0  # not before publish
    tally.publish()
    tally.publish()  # nothing new observed: nothing added
    observe_all(_histogram(at_once), values)

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, round(s.value, 6))
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    assert samples(tallied) == samples(one_by_one)
    assert samples(at_once) == samples(one_by_one)
