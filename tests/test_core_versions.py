"""Journey versions: instances stay pinned; explicit migrations move them."""

from __future__ import annotations

from orchestrator.core.decide import decide
from orchestrator.core.decision import TimerFired
from orchestrator.journey.catalog import Catalog
from orchestrator.records import Touchpoint

T0 = 1_772_438_400_000
H = 3_600_000

V1 = """
id: j
name: J
version: 1
entry: {event: Go, reentry: always}
steps:
  first: {type: action, channel: webhook, template: v1_first, next: pause}
  pause: {type: wait, duration: 2h, next: second}
  second: {type: action, channel: webhook, template: v1_second, next: done}
  done: {type: end}
"""
V2 = """
id: j
name: J
version: 2
entry: {event: Go, reentry: always}
steps:
  first: {type: action, channel: webhook, template: v2_first, next: hold}
  hold: {type: wait, duration: 5h, next: second}
  second: {type: action, channel: webhook, template: v2_second, next: done}
  done: {type: end}
"""
MIGRATE = "migrations:\n  - from: 1\n    steps: {pause: hold}\n"


def go(at: int, event_id: str) -> Touchpoint:
    return Touchpoint(event_id, "track", "Go", "web", at, customer_id="c1")


def test_instances_stay_pinned_to_their_version_and_new_entries_take_the_new_one():
    d1 = decide(None, go(T0, "a"), Catalog.from_yaml(V1), customer_id="c1")
    (timer,) = d1.timers_set
    both = Catalog.from_yaml(V1, V2)  # deployed v2 while c1 waits inside v1
    fired = decide(d1.state, TimerFired("c1", timer.timer_id, timer.due_at, timer.due_at), both,
                   customer_id="c1")  # fmt: skip
    assert [(a.template, a.journey_version) for a in fired.actions] == [("v1_second", 1)]
    d2 = decide(fired.state, go(T0 + 3 * H, "b"), both, customer_id="c1")
    assert [(a.template, a.journey_version) for a in d2.actions] == [("v2_first", 2)]


def test_a_migration_moves_waiting_instances_keeping_their_timer():
    d1 = decide(None, go(T0, "a"), Catalog.from_yaml(V1), customer_id="c1")
    (timer,) = d1.timers_set
    migrated = Catalog.from_yaml(V1, V2 + MIGRATE)
    fired = decide(d1.state, TimerFired("c1", timer.timer_id, timer.due_at, timer.due_at),
                   migrated, customer_id="c1")  # fmt: skip
    assert [(a.template, a.journey_version, a.step) for a in fired.actions] == [
        ("v2_second", 2, "second")
    ]


def test_an_instance_whose_version_was_removed_without_migration_exits():
    d1 = decide(None, go(T0, "a"), Catalog.from_yaml(V1), customer_id="c1")
    (timer,) = d1.timers_set
    only_v2 = Catalog.from_yaml(V2)
    d = decide(d1.state, go(T0 + H, "b"), only_v2, customer_id="c1")
    assert [(f.kind, f.journey_version) for f in d.funnel][:1] == [("exited", 1)]
    assert [(a.template, a.journey_version) for a in d.actions] == [("v2_first", 2)]
    stale = decide(d.state, TimerFired("c1", timer.timer_id, timer.due_at, timer.due_at),
                   only_v2, customer_id="c1")  # fmt: skip
    assert stale.actions == ()
