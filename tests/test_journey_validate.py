"""``rota validate``: every kind of mistake is caught, located and explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.journey.catalog import Catalog, load_catalog
from orchestrator.journey.problems import JourneyValidationError, Problem
from orchestrator.journey.validate import main, validate_paths

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
id: demo
name: Demo
version: 1
entry:
  event: Signed Up
steps:
  hello:
    type: action
    channel: email
    template: hi
    next: pause
  pause:
    type: wait
    duration: 1d
    next: done
  done:
    type: end
"""


def problems_in(tmp_path: Path, text: str, name: str = "j.yaml") -> list[Problem]:
    path = tmp_path / name
    path.write_text(text)
    return validate_paths([path])


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def test_the_shipped_journeys_are_valid():
    assert validate_paths([REPO / "journeys"]) == []
    assert len(load_catalog([REPO / "journeys"])) >= 6


def test_a_valid_file_has_no_problems(tmp_path):
    assert problems_in(tmp_path, GOOD) == []


def test_yaml_syntax_error_points_at_the_line(tmp_path):
    p = only(problems_in(tmp_path, GOOD.replace("    channel: email", "    channel: [email")))
    assert "YAML syntax error" in p.message
    assert p.line in (10, 11) and p.column > 0 and p.hint


def test_schema_violation_names_the_field_and_the_allowed_ones(tmp_path):
    p = only(problems_in(tmp_path, GOOD.replace("    template: hi", "    templat: hi")))
    assert (p.line, p.column) == (10, 5)
    assert "unknown field 'templat'" in p.message and "template" in p.hint


def test_missing_required_field(tmp_path):
    p = only(problems_in(tmp_path, GOOD.replace("version: 1\n", "")))
    assert "'version' is a required property" in p.message


def test_bad_duration_is_explained(tmp_path):
    p = only(problems_in(tmp_path, GOOD.replace("duration: 1d", "duration: one day")))
    assert (p.line, p.column) == (14, 15)
    assert "not a duration" in p.message and "48h" in p.hint


def test_unknown_step_reference_suggests_the_closest_name(tmp_path):
    p = only(problems_in(tmp_path, GOOD.replace("next: pause", "next: paus")))
    assert (p.line, p.column) == (11, 11)
    assert "unknown step 'paus'" in p.message and "'pause'" in p.hint


def test_unreachable_step(tmp_path):
    text = GOOD + "  orphan:\n    type: end\n"
    p = only(problems_in(tmp_path, text))
    assert p.line == 18 and "'orphan' is unreachable" in p.message


def test_loop_without_a_wait_is_rejected_but_a_loop_with_one_is_fine(tmp_path):
    looping = GOOD.replace("next: pause", "next: again") + (
        "  again:\n    type: branch\n    cases: [{when: 'true', next: hello}]\n    default: pause\n"
    )
    p = only(problems_in(tmp_path, looping))
    assert "loop without a wait" in p.message and "hello" in p.message and "again" in p.message
    waiting = GOOD.replace("next: done", "next: again") + (
        "  again:\n    type: branch\n    cases: [{when: 'true', next: hello}]\n    default: done\n"
    )
    assert problems_in(tmp_path, waiting) == []


def test_split_weights_must_add_up_to_100(tmp_path):
    text = GOOD.replace(
        "  hello:\n",
        "  split:\n    type: split\n    variants:\n"
        "      - {name: a, weight: 50, next: hello}\n      - {name: b, weight: 40, next: done}\n"
        "    holdout: {weight: 5, next: done}\n  hello:\n",
    )
    p = only(problems_in(tmp_path, text))
    assert "add up to 95, not 100" in p.message and p.line == 10


def test_cel_that_does_not_compile_points_into_the_expression(tmp_path):
    text = GOOD.replace("  event: Signed Up\n", "  event: Signed Up\n  condition: event.x >\n")
    p = only(problems_in(tmp_path, text))
    assert "CEL does not compile" in p.message
    assert p.line == 6 and p.column > 14


def test_cel_naming_unknown_variables(tmp_path):
    text = GOOD.replace("  event: Signed Up\n", "  event: Signed Up\n  condition: user.age > 3\n")
    p = only(problems_in(tmp_path, text))
    assert "unknown variable(s) user" in p.message and "profile" in p.hint


def test_segment_may_only_use_the_profile(tmp_path):
    text = GOOD.replace("  event: Signed Up\n", "  event: Signed Up\n  segment: event.x == 1\n")
    assert "unknown variable(s) event" in only(problems_in(tmp_path, text)).message


def test_unknown_channel_suggests_a_known_one(tmp_path):
    p = only(problems_in(tmp_path, GOOD.replace("channel: email", "channel: emial")))
    assert (p.line, p.column) == (9, 14)
    assert "unknown channel 'emial'" in p.message and "'email'" in p.hint


def test_extra_channels_can_be_allowed(tmp_path):
    (tmp_path / "j.yaml").write_text(GOOD.replace("channel: email", "channel: whatsapp"))
    assert main([str(tmp_path), "--channel", "whatsapp"]) == 0


def test_duplicate_journey_id_and_version_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    p = only(validate_paths([tmp_path]))
    assert p.file.endswith("b.yaml") and "duplicate journey 'demo' version 1" in p.message
    assert "a.yaml:1" in p.hint
    (tmp_path / "b.yaml").write_text(GOOD.replace("version: 1", "version: 2"))
    assert validate_paths([tmp_path]) == []  # two versions of one journey


def test_reentry_cooldown_needs_a_duration(tmp_path):
    text = GOOD.replace("  event: Signed Up\n", "  event: Signed Up\n  reentry: cooldown\n")
    assert "needs a `cooldown`" in only(problems_in(tmp_path, text)).message


def test_migration_must_name_steps_that_exist(tmp_path):
    (tmp_path / "v1.yaml").write_text(GOOD)
    v2 = GOOD.replace("version: 1", "version: 2") + "migrations:\n  - from: 1\n    steps:\n"
    (tmp_path / "v2.yaml").write_text(v2 + "      pause: pause\n      nap: done\n")
    p = only(validate_paths([tmp_path]))
    assert "version 1 of 'demo' has no step 'nap'" in p.message


def test_several_problems_are_all_reported(tmp_path):
    text = GOOD.replace("next: pause", "next: nowhere").replace("channel: email", "channel: x")
    assert len(problems_in(tmp_path, text)) == 2


def test_main_prints_file_line_column_and_exits_nonzero(tmp_path, capsys):
    (tmp_path / "ok.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("next: pause", "next: paus"))
    assert main([str(tmp_path / "ok.yaml")]) == 0
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'bad.yaml'}:11:11: unknown step 'paus' (did you mean 'pause'?)" in out
    assert main([str(tmp_path / "missing.yaml")]) == 1


def test_load_catalog_raises_with_every_problem(tmp_path):
    (tmp_path / "bad.yaml").write_text(GOOD.replace("channel: email", "channel: x"))
    with pytest.raises(JourneyValidationError) as caught:
        load_catalog([tmp_path])
    assert len(caught.value.problems) == 1
    assert str(caught.value).startswith(
        f"{tmp_path / 'bad.yaml'}:9:14: step 'hello': unknown channel 'x'"
    )


def test_times_of_day_need_no_quotes(tmp_path):
    text = GOOD.replace("duration: 1d", "until_time: 09:30")
    assert problems_in(tmp_path, text) == []
    cat = Catalog.from_yaml(text)
    assert cat.current["demo"].steps["pause"].until_time == 9 * 60 + 30  # type: ignore[union-attr]


def test_several_journeys_in_one_file(tmp_path):
    two = GOOD + "---\n" + GOOD.replace("id: demo", "id: other")
    assert problems_in(tmp_path, two) == []
    assert len(load_catalog([tmp_path / "j.yaml"])) == 2


def test_yes_and_no_are_names_not_booleans(tmp_path):
    text = GOOD.replace("next: pause", "next: yes").replace("  pause:", "  yes:")
    assert problems_in(tmp_path, text) == []


def test_the_readme_example_is_a_valid_journey():
    text = (REPO / "journeys" / "README.md").read_text()
    example = text.split("## The language, by example\n\n```yaml\n", 1)[1].split("```", 1)[0]
    cat = Catalog.from_yaml(example)
    plan = cat.current["cart_abandonment"]
    assert plan.version == 2 and len(plan.steps) == 10 and 1 in plan.migrations
