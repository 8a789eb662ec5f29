"""``rota validate PATH...``: check journey files before they are deployed.

Prints one line per problem, ``file:line:column: what is wrong (hint)``, and a summary.
Exit code 0 only when every file is valid, 1 when any is not, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from orchestrator.journey.catalog import check_documents, journey_files
from orchestrator.journey.parse import Document, read_documents
from orchestrator.journey.problems import Problem
from orchestrator.records import CHANNELS


def validate_paths(
    paths: Sequence[str | Path], channels: Collection[str] = CHANNELS
) -> list[Problem]:
    """Every problem in the journeys under ``paths`` (files or directories), in file order."""
    files, problems = journey_files(paths)
    docs: list[Document] = []
    for f in files:
        d, p = read_documents(f)
        docs.extend(d)
        problems.extend(p)
    problems.extend(check_documents(docs, channels)[1])
    return sorted(set(problems), key=lambda p: (p.file, p.line, p.column, p.message))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rota validate", description="Check journey files (YAML) before deploying them."
    )
    parser.add_argument("paths", nargs="+", help="journey files or directories of them")
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        help="an extra channel name that connectors provide (repeatable)",
    )
    args = parser.parse_args(argv)
    files, _ = journey_files(args.paths)
    problems = validate_paths(args.paths, (*CHANNELS, *args.channel))
    for p in problems:
        print(p)
    bad = len({p.file for p in problems})
    if problems:
        print(f"{len(problems)} problem(s) in {bad} file(s)", file=sys.stderr)
        return 1
    print(f"{len(files)} journey file(s) valid")
    return 0
