"""``python -m orchestrator.bench.cost``: its scenarios do the work they are named for
(the instruction counts compare changes by them), and the command reports each kind."""

from __future__ import annotations

import subprocess
import sys

from orchestrator.bench import cost
from orchestrator.bench.workload import Workload
from orchestrator.worker import timers


def test_the_timer_scenario_fires_every_armed_reminder_once_with_its_action_and_transitions():
    run, items = cost.scenario("timer", 40)
    assert items == 40
    # The reminder journey: one log action, then step, step and completed transitions.
    assert run() == 40 * 4
    assert run() == 0  # all fired: none is due again


def test_the_touchpoint_scenario_decides_over_customers_that_mostly_have_a_state():
    run, items = cost.scenario("touchpoint", 300)
    assert items == 300
    out = run()
    assert 0 < out < 3 * items  # actions and transitions of a tenth or so of the events
    generated = Workload(cost.SPEC, seed_offset=3).encoded(cost.WARM + 300, cost.NOW)
    warm, measured = cost.split_warm([g.key for g in generated])
    assert len(measured) == 300
    known = set(warm)
    assert 0.55 <= sum(key in known for key in measured) / 300 <= 0.75  # e^-1 are new


def test_the_decision_scenario_makes_the_workloads_share_of_actions():
    run, items = cost.scenario("decision", 1000)
    assert items == 1000
    assert 50 <= run() <= 150  # action_share 0.10


def test_the_delivery_scenario_hands_every_fetched_record_to_a_batch_once():
    run, items = cost.scenario("delivery", 500)
    assert items == 500
    assert run() == 500  # several fetches (160 each) over 8 partitions, all taken


def test_the_memory_backend_lists_due_timers_in_order_and_forgets_fired_ones():
    backend = cost.MemoryBackend()
    keys = [b"%013d" % due + timers.SEP + b"c" + timers.SEP + b"t" for due in (30, 10, 20)]
    for key in keys + keys[:1]:
        backend.put_timer(key)
    assert backend.due_timers(20, 10) == [keys[1], keys[2]]
    assert backend.due_timers(30, 2) == [keys[1], keys[2]]
    backend.write([], [keys[1]])
    assert backend.due_timers(30, 10) == [keys[2], keys[0]]


def test_the_command_prints_each_kind_and_what_a_fired_timer_costs(capsys):
    assert cost.main(["--count", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:4]] == list(cost.KINDS)
    assert all(float(line.split()[1]) > 0 for line in lines[:4])
    assert lines[4].startswith("a fired timer costs ")
    assert lines[4].endswith(" once a touchpoint's delivery is counted")


def test_a_callgrind_child_runs_the_setup_alone_or_with_the_measured_part():
    def child(*extra: str) -> str:
        cmd = [sys.executable, "-m", "orchestrator.bench.cost", "--child", "timer"]
        done = subprocess.run([*cmd, "--count", "25", *extra], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert child() == "25 timers: 100 records out\n"
    assert child("--setup-only") == ""
