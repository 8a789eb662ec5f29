"""``rota simulate`` end to end: files in, actions, traces and funnels out."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.simulate import main

JOURNEYS = str(Path(__file__).resolve().parent.parent / "journeys")


def write_events(path: Path, *lines: str | dict) -> str:
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return str(path)


SIGNUP = {
    "event_id": "e1", "type": "identify", "name": "Signed Up", "channel": "web",
    "occurred_at": "2026-03-02T08:00:00Z", "customer_id": "c1",
    "traits": {"email": "c1@example.com"},
}  # fmt: skip
ADDED = {
    "event_id": "e2", "type": "track", "name": "Product Added", "channel": "web",
    "occurred_at": "2026-03-02T09:00:00Z", "customer_id": "c1",
}  # fmt: skip


def test_prints_actions_in_order_and_a_funnel_per_journey(tmp_path, capsys):
    events = write_events(tmp_path / "ev.jsonl", SIGNUP, ADDED)
    code = main(["--journeys", JOURNEYS, "--events", events, "--until", "2026-03-02T12:00:00Z"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    actions = [line for line in out if line.startswith("2026-")]
    assert [line.split("  ")[:6] for line in actions] == [
        ["2026-03-02T08:00:00.000Z", "c1", "welcome@1", "send_welcome", "email", "welcome_1"],
        ["2026-03-02T10:00:00.000Z", "c1", "cart_abandonment@1", "remind_email", "email",
         "cart_reminder"],
    ]  # fmt: skip
    assert all(line.split("  ")[-1].startswith("id=") for line in actions)
    start = out.index("funnel welcome@1 (goal: Order Completed)")
    assert out[start + 1].split() == ["entered", "1"]
    assert out[start + 2].split() == ["send_welcome", "1"]
    assert "still waiting" in out[start + 13] and out[start + 13].split()[-1] == "1"


def test_bad_lines_are_reported_with_line_numbers_and_the_rest_still_runs(tmp_path, capsys):
    events = write_events(
        tmp_path / "ev.jsonl", "{not json", {"event_id": "x", "name": "Nope"}, SIGNUP
    )
    assert main(["--journeys", JOURNEYS, "--events", events]) == 1
    captured = capsys.readouterr()
    assert f"{events}:1: bad touchpoint" in captured.err
    assert f"{events}:2: bad touchpoint: missing field(s)" in captured.err
    assert "send_welcome" in captured.out


def test_strict_stops_at_the_first_bad_line(tmp_path, capsys):
    events = write_events(tmp_path / "ev.jsonl", "{not json", SIGNUP)
    assert main(["--journeys", JOURNEYS, "--events", events, "--strict"]) == 1
    assert "send_welcome" not in capsys.readouterr().out


def test_trace_explains_each_decision_for_one_customer(tmp_path, capsys):
    events = write_events(tmp_path / "ev.jsonl", SIGNUP, ADDED)
    assert main(["--journeys", JOURNEYS, "--events", events, "--trace", "c1"]) == 0
    out = capsys.readouterr().out
    assert "# c1: event 'Signed Up' (e1)" in out
    assert "#   welcome@1 welcome#1: entered on event 'Signed Up'" in out
    assert "#   welcome@1 welcome#1: send_welcome: send welcome_1 on email" in out


def test_invalid_journeys_exit_non_zero(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("id: x\n")
    events = write_events(tmp_path / "ev.jsonl", SIGNUP)
    assert main(["--journeys", str(tmp_path), "--events", events]) == 2
    assert "bad.yaml:1:1" in capsys.readouterr().err


def test_output_is_identical_across_runs(tmp_path, capsys):
    events = write_events(tmp_path / "ev.jsonl", SIGNUP, ADDED)
    args = ["--journeys", JOURNEYS, "--events", events, "--until", "2026-05-01T00:00:00Z"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first
