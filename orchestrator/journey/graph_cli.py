"""``rota journeys graph ID``: a journey drawn from its file (journeys are code, so no
cluster is needed), as Mermaid, Graphviz DOT or SVG, optionally with the workers' live
funnel counts. The drawing itself is ``orchestrator.journey.graph``."""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

from orchestrator.funnel import SAMPLE, Funnel, funnels
from orchestrator.journey import graph
from orchestrator.journey.catalog import load_catalog
from orchestrator.journey.problems import JourneyValidationError
from orchestrator.records import CHANNELS
from orchestrator.run import scrape
from orchestrator.settings import Settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rota journeys graph",
        description="Draw a journey from its file as a flowchart: Mermaid (default), "
        "Graphviz DOT, or SVG through Graphviz. With --metrics, the workers' live funnel "
        "counts are shown on the steps.",
    )
    p.add_argument("id", help="journey id (the current, highest version is drawn)")
    p.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid")
    p.add_argument("--out", metavar="FILE", help="write the diagram here, not to stdout")
    p.add_argument(
        "--journeys",
        action="append",
        metavar="PATH",
        help="journey file or directory, repeatable (default: ROTA_JOURNEYS, journeys/)",
    )
    p.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="URL",
        help="a worker's metrics URL (http://host:9464/metrics); one per worker",
    )
    p.add_argument("--channel", action="append", default=[], help="extra channel name")
    args = p.parse_args(argv)
    paths = args.journeys or [Settings.from_env().journeys]
    try:
        catalog = load_catalog(paths, (*CHANNELS, *args.channel))
    except JourneyValidationError as exc:
        print(exc, file=sys.stderr)
        print(
            f"rota journeys graph: {len(exc.problems)} problem(s) in the journeys", file=sys.stderr
        )
        return 1
    plan = catalog.current.get(args.id)
    if plan is None:
        known = sorted(catalog.current)
        close = difflib.get_close_matches(args.id, known, 1)
        print(
            f"rota journeys graph: no journey {args.id!r} in {', '.join(map(str, paths))}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f"\nknown journeys: {', '.join(known) or '(none)'}",
            file=sys.stderr,
        )
        return 2
    funnel = None
    if args.metrics:
        try:
            samples = [s for url in args.metrics for s in _funnel_samples(url)]
        except (OSError, ValueError) as exc:
            print(f"rota journeys graph: --metrics: {exc}", file=sys.stderr)
            return 1
        funnel = funnels(samples).get(plan.id, Funnel())
    drawing = graph.diagram(plan, funnel)
    text = graph.to_dot(drawing) if args.format != "mermaid" else graph.to_mermaid(drawing)
    if args.format == "svg":
        dot = shutil.which("dot")
        if dot is None:
            print(
                "rota journeys graph: --format svg needs Graphviz's `dot`, which is not "
                "installed. Install it (Debian/Ubuntu: apt-get install graphviz; macOS: "
                "brew install graphviz), or use --format mermaid or dot.",
                file=sys.stderr,
            )
            return 2
        done = subprocess.run(
            [dot, "-Tsvg"], input=text, capture_output=True, encoding="utf-8", timeout=120
        )
        if done.returncode != 0:
            print(f"rota journeys graph: dot failed: {done.stderr.strip()}", file=sys.stderr)
            return 1
        text = done.stdout
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({args.format}, {plan.key})")
    else:
        sys.stdout.write(text)
    return 0


def _funnel_samples(url: str) -> list[tuple[dict[str, str], float]]:
    """One worker's funnel counter; ``host:port`` alone means its /metrics."""
    if "://" not in url:
        url = "http://" + url
    if urllib.parse.urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/metrics"
    try:
        samples = scrape(url, timeout=10)
    except OSError as exc:
        raise OSError(f"cannot read {url}: {exc}") from exc
    return [(dict(labels), v) for (name, labels), v in samples.items() if name == SAMPLE]
