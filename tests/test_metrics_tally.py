"""``metrics.Tally``: a batch's counts reach the counters once, when published."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from orchestrator.metrics import Tally


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
