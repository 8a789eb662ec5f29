"""``rota journeys graph``: every journey drawn completely, readably and safely, in
Mermaid, DOT and (through the real Graphviz) SVG, with live counts from real workers'
metrics endpoints. No Kafka."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import Counter as PromCounter

from orchestrator.cli import main
from orchestrator.funnel import Funnel
from orchestrator.journey.catalog import Catalog, load_catalog
from orchestrator.journey.compile import successors
from orchestrator.journey.graph import diagram, to_dot, to_mermaid
from orchestrator.journey.plan import JourneyPlan

REPO = Path(__file__).resolve().parent.parent
JOURNEYS = REPO / "journeys"
EXAMPLES = load_catalog([JOURNEYS]).current
SVG = "{http://www.w3.org/2000/svg}"

#: Quotes, HTML and its entities, Mermaid syntax (` #code;), DOT escapes (\n) and line
#: breaks in every place text can come from; step names that are a Mermaid keyword or
#: hold a hyphen.
TRICKY = r"""
id: tricky-one
name: 'Tricky "quotes" & <tags> | pipes #1 `tick` \back'
version: 3
entry:
  event: 'Signed "Up" <now> &amp; more'
  condition: 'event.properties.tier == "gold" && event.properties.n < 3'
  segment: |-
    profile.traits.country == "FR"
      && profile.order_count > 0
goal:
  event: 'Order | Completed'
  condition: 'event.properties.note.contains("#35;1") || event.properties.x > 2'
exit:
  - condition: 'profile.traits.a == "\\n"'
steps:
  first-step:
    type: branch
    cases:
      - {when: 'profile.traits.name == "O''Brien" && profile.nps <= 6.0', next: end}
      - {when: 'profile.traits.path.startsWith("a|b`c")', next: end_2}
    default: end-2
  end:
    type: update
    traits: {label: 'say "hi" <b>', vip: true}
    next: end_2
  end_2:
    type: end
  end-2:
    type: wait_for
    event: '`A` "quoted" event'
    timeout: 90m
    on_event: end_2
    on_timeout: end_2
"""

# -- reading the output back ---------------------------------------------------------

_NODE = re.compile(
    r'    (?P<id>\w+)(\(\[|\[\[|\{\{|\[/|\(|\[|\{|>)"(?P<label>[^"]*)"'
    r"(\]\)|\]\]|\}\}|\\\]|\)|\]|\}):::rota_\w+"
)
_EDGE = re.compile(r'    (?P<src>\w+) -->(\|"(?P<label>[^"]*)"\|)? (?P<dst>\w+)')
_OTHER = re.compile(r"    (\w+ -\.- \w+|classDef rota_\w+ .+)")


def _lines(label: str) -> list[str]:
    """What Mermaid shows for a quoted label: a backtick first makes it Markdown,
    ``<br/>`` and a literal ``\\n`` break lines, ``#name;`` and ``#123;`` are entities."""
    assert not label.startswith("`"), f"Mermaid reads this label as Markdown: {label}"
    return [_decode(line) for line in re.split(r"<br/>|\\n", label)]


def _decode(text: str) -> str:
    return html.unescape(
        re.sub(r"#(\w+);", lambda m: f"&{'#' if m[1].isdigit() else ''}{m[1]};", text)
    )


def read_mermaid(text: str) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    """Node id -> label lines, and (source, label, target) per arrow. Fails on any line
    that is not a node, an arrow, the note's link or a style."""
    head, body = text.split("flowchart TD\n")
    assert head.startswith("---\ntitle: ")
    nodes: dict[str, list[str]] = {}
    edges: list[tuple[str, str, str]] = []
    for line in body.splitlines():
        if node := _NODE.fullmatch(line):
            assert node["id"] not in nodes, line
            nodes[node["id"]] = _lines(node["label"])
        elif edge := _EDGE.fullmatch(line):
            (label,) = _lines(edge["label"] or "")
            edges.append((edge["src"], label, edge["dst"]))
        else:
            assert _OTHER.fullmatch(line), f"not Mermaid this test knows: {line!r}"
    return nodes, edges


def step_nodes(plan: JourneyPlan, nodes: dict[str, list[str]]) -> dict[str, str]:
    """Node id -> step name, for the nodes whose first line is a step name."""
    return {node_id: lines[0] for node_id, lines in nodes.items() if lines[0] in plan.steps}


def svg_texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def graphviz(dot_text: str) -> str:
    dot = shutil.which("dot")
    assert dot, "Graphviz is not installed: apt-get install graphviz (.ci/run does)"
    done = subprocess.run(
        [dot, "-Tsvg"], input=dot_text, capture_output=True, encoding="utf-8", timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- the diagram ---------------------------------------------------------------------


@pytest.mark.parametrize("journey_id", sorted(EXAMPLES))
def test_mermaid_has_every_step_and_every_link_of_the_journey(journey_id):
    plan = EXAMPLES[journey_id]
    nodes, edges = read_mermaid(to_mermaid(diagram(plan)))
    names = step_nodes(plan, nodes)
    assert sorted(names.values()) == sorted(plan.steps)
    links = Counter((names[s], names[d]) for s, _, d in edges if s in names and d in names)
    expected = Counter((name, nxt) for name, step in plan.steps.items() for nxt in successors(step))
    assert links == expected
    starts = [names[d] for s, _, d in edges if s not in names and d in names]
    assert starts == [plan.start]  # the entry leads to the first step, and only there


@pytest.mark.parametrize(
    ("journey_id", "where", "text"),
    [
        ("cart_abandonment", "entry", "Enters on Product Added"),
        ("cart_abandonment", "entry", "again 3d after leaving"),
        ("cart_abandonment", "remind_email", "send email: cart_reminder"),
        ("cart_abandonment", "nudge", "send best of sms or push: cart_nudge"),
        ("cart_abandonment", "nudge", "offer FREESHIP"),
        ("cart_abandonment", "grace_period", "wait 1h"),
        ("cart_abandonment", "wait_open", "wait for Email Opened"),
        ("cart_abandonment", "wait_open->opened", "Email Opened"),
        ("cart_abandonment", "wait_open->nudge", "no Email Opened in 1d"),
        ("cart_abandonment", "note", "Goal: Order Completed within 7d"),
        ("cart_abandonment", "note", "Exit on Unsubscribed"),
        ("welcome", "next_morning", "wait until 10:00 local time"),
        ("welcome", "mark_consideration", "set stage consideration"),
        ("winback", "lapsed", "set lapsed = true"),
        ("winback", "entry", "segment: profile.order_count >= 1"),
        ("browse_abandonment", "who->remind", "if profile.order_count > 0"),
        ("browse_abandonment", "who->remind_with_discount", "otherwise"),
        ("second_order_test", "assign->discount_email", "discount 45%"),
        ("second_order_test", "assign->measure", "holdout 10%"),
        ("post_purchase_nps", "done", "end"),
    ],
)
def test_each_node_and_arrow_says_what_the_step_does(journey_id, where, text):
    plan = EXAMPLES[journey_id]
    nodes, edges = read_mermaid(to_mermaid(diagram(plan)))
    names = {v: k for k, v in step_nodes(plan, nodes).items()}
    if "->" in where:
        source, target = where.split("->")
        labels = [lbl for s, lbl, d in edges if (s, d) == (names[source], names[target])]
        assert text in labels
    else:
        node = {"entry": "entry", "note": "rules"}.get(where) or names[where]
        assert text in nodes[node]


@pytest.mark.parametrize("journey_id", sorted(EXAMPLES))
def test_dot_draws_through_graphviz_with_every_step_and_arrow(journey_id):
    plan = EXAMPLES[journey_id]
    svg = graphviz(to_dot(diagram(plan)))
    assert set(plan.steps) <= set(svg_texts(svg))
    arrows = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "edge"]
    links = sum(len(successors(step)) for step in plan.steps.values())
    has_note = plan.goal is not None or bool(plan.exits)
    assert len(arrows) == links + 1 + has_note  # + entry -> start, + the note's link


def test_quotes_and_special_characters_reach_the_reader_unchanged():
    plan = Catalog.from_yaml(TRICKY).current["tricky-one"]
    originals = [
        'Enters on Signed "Up" <now> &amp; more',
        'segment: profile.traits.country == "FR" && profile.order_count > 0',
        'if event.properties.tier == "gold" && event.properties.n < 3',
        'set label = "say \\"hi\\" <b>"',
        'wait for `A` "quoted" event',
        '`A` "quoted" event',
        'Goal: Order | Completed if event.properties.note.contains("#35;1") '
        "|| event.properties.x > 2",
        'Exit when profile.traits.a == "\\\\n"',
        'if profile.traits.name == "O\'Brien" && profile.nps <= 6.0',
        'if profile.traits.path.startsWith("a|b`c")',
        'no `A` "quoted" event in 1h30m',
    ]
    mermaid = to_mermaid(diagram(plan))
    nodes, edges = read_mermaid(mermaid)
    shown = {line for lines in nodes.values() for line in lines} | {e[1] for e in edges}
    assert set(originals) <= shown
    assert sorted(step_nodes(plan, nodes).values()) == sorted(plan.steps)
    assert 'title: "Tricky \\"quotes\\" & <tags>' in mermaid
    texts = svg_texts(graphviz(to_dot(diagram(plan))))
    assert set(originals) | set(plan.steps) <= set(texts)
    assert 'Tricky "quotes" & <tags> | pipes #1 `tick` \\back (tricky-one v3)' in texts


def test_funnel_counts_appear_on_the_nodes_when_given():
    plan = EXAMPLES["cart_abandonment"]
    funnel = Funnel(
        entered=1234, converted=56, exited=7, completed=1000, steps={"remind_email": 1200}
    )
    nodes, _ = read_mermaid(to_mermaid(diagram(plan, funnel)))
    names = {v: k for k, v in step_nodes(plan, nodes).items()}
    assert "1,200 reached" in nodes[names["remind_email"]]
    assert "0 reached" in nodes[names["grace_period"]]
    assert "1,234 entered" in nodes["entry"]
    assert {"56 converted (4.5%)", "7 exited, 1,000 completed"} <= set(nodes["rules"])
    assert "1,200 reached" in svg_texts(graphviz(to_dot(diagram(plan, funnel))))
    plain = to_mermaid(diagram(plan)) + to_dot(diagram(plan))
    assert "reached" not in plain and "entered" not in plain


# -- the command ---------------------------------------------------------------------


def test_out_writes_the_same_file_whatever_the_process(tmp_path):
    command = [sys.executable, "-m", "orchestrator.cli", "journeys", "graph", "cart_abandonment"]
    outs = []
    for seed in ("1", "2"):  # set and dict order must not depend on hashing
        out = tmp_path / f"cart-{seed}.mmd"
        done = subprocess.run(
            [*command, "--journeys", str(JOURNEYS), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert done.returncode == 0, done.stderr
        assert f"wrote {out}" in done.stdout
        outs.append(out.read_text())
    assert outs[0] == outs[1] == to_mermaid(diagram(EXAMPLES["cart_abandonment"]))


def test_unknown_id_exits_2_naming_the_closest_and_every_known_id(capsys):
    assert main(["journeys", "graph", "cart_abandonmnet", "--journeys", str(JOURNEYS)]) == 2
    err = capsys.readouterr().err
    assert "no journey 'cart_abandonmnet'" in err
    assert "did you mean 'cart_abandonment'?" in err
    assert all(journey_id in err for journey_id in EXAMPLES)


def test_journeys_default_to_rota_journeys_and_no_cluster_is_needed(tmp_path, monkeypatch, capsys):
    (tmp_path / "tricky.yaml").write_text(TRICKY)
    monkeypatch.setenv("ROTA_JOURNEYS", str(tmp_path))
    monkeypatch.delenv("ROTA_KAFKA_BOOTSTRAP", raising=False)
    assert main(["journeys", "graph", "tricky-one", "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph journey {")
    assert '"step_first_step" -> "step_end"' in out


def test_svg_format_runs_graphviz_into_the_out_file(tmp_path, capsys):
    out = tmp_path / "nps.svg"
    argv = ["journeys", "graph", "post_purchase_nps", "--journeys", str(JOURNEYS)]
    assert main([*argv, "--format", "svg", "--out", str(out)]) == 0
    assert set(EXAMPLES["post_purchase_nps"].steps) <= set(svg_texts(out.read_text()))


def test_svg_without_graphviz_exits_2_saying_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot` on it
    argv = ["journeys", "graph", "welcome", "--journeys", str(JOURNEYS), "--format", "svg"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "apt-get install graphviz" in captured.err
    assert captured.out == ""


@pytest.fixture
def serve_metrics() -> Iterator[Callable[[CollectorRegistry], int]]:
    """Serves a registry the way a worker does (prometheus_client's HTTP server)."""
    servers = []

    def serve(registry: CollectorRegistry) -> int:
        httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        servers.append((httpd, thread))
        return int(httpd.server_port)

    yield serve
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _worker_registry(counts: dict[tuple[str, str, str], int]) -> CollectorRegistry:
    registry = CollectorRegistry()
    funnel = PromCounter(
        "rota_journey_funnel",
        "Journey transitions.",
        ["journey", "kind", "step"],
        registry=registry,
    )
    for labels, n in counts.items():
        funnel.labels(*labels).inc(n)
    return registry


def test_metrics_of_every_worker_are_summed_onto_the_steps(serve_metrics, capsys):
    one = serve_metrics(
        _worker_registry(
            {
                ("cart_abandonment", "entered", ""): 10,
                ("cart_abandonment", "step", "grace_period"): 10,
                ("cart_abandonment", "step", "remind_email"): 8,
                ("cart_abandonment", "converted", "wait_open"): 2,
                ("welcome", "step", "remind_email"): 100,  # another journey: not counted
            }
        )
    )
    two = serve_metrics(
        _worker_registry(
            {
                ("cart_abandonment", "entered", ""): 5,
                ("cart_abandonment", "step", "grace_period"): 5,
                ("cart_abandonment", "step", "remind_email"): 4,
                ("cart_abandonment", "converted", "nudge"): 1,
                ("cart_abandonment", "exited", "nudge"): 1,
            }
        )
    )
    argv = ["journeys", "graph", "cart_abandonment", "--journeys", str(JOURNEYS)]
    metrics = ["--metrics", f"http://127.0.0.1:{one}/metrics", "--metrics", f"127.0.0.1:{two}"]
    assert main(argv + metrics) == 0
    plan = EXAMPLES["cart_abandonment"]
    nodes, _ = read_mermaid(capsys.readouterr().out)
    names = {v: k for k, v in step_nodes(plan, nodes).items()}
    assert "15 reached" in nodes[names["grace_period"]]
    assert "12 reached" in nodes[names["remind_email"]]
    assert "0 reached" in nodes[names["nudge"]]
    assert "15 entered" in nodes["entry"]
    assert {"3 converted (20.0%)", "1 exited, 0 completed"} <= set(nodes["rules"])


def test_an_unreachable_worker_fails_the_command_naming_it(capsys):
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["journeys", "graph", "welcome", "--journeys", str(JOURNEYS)]
    assert main([*argv, "--metrics", f"127.0.0.1:{port}"]) == 1
    captured = capsys.readouterr()
    assert f"cannot read http://127.0.0.1:{port}/metrics" in captured.err
    assert captured.out == ""


def test_the_example_in_the_journeys_readme_is_what_the_command_draws():
    readme = (JOURNEYS / "README.md").read_text()
    block = readme.split("`browse_abandonment.yaml` drawn:\n\n```mermaid\n")[1].split("```")[0]
    assert block == to_mermaid(diagram(EXAMPLES["browse_abandonment"]))
