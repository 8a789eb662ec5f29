"""The contact policy file (``ROTA_POLICY``, default ``policy.yaml``): frequency caps
and quiet hours for every journey of a deployment. Format in journeys/README.md,
"Contact policy"; the rules themselves are ``orchestrator.core.policy``.

A bad file is refused before anything runs, every problem with its file, line and
column, like a bad journey file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.policy import ALL_CHANNELS, Cap, Policy, QuietHours
from orchestrator.journey.duration import parse_duration
from orchestrator.journey.problems import JourneyValidationError, Problem

_TOP = {"caps", "quiet_hours"}
_CAP = {"max", "per", "channel"}


def load_policy(path: Path | None, channels: tuple[str, ...]) -> Policy:
    """The policy in ``path``; no caps and no quiet hours when ``path`` is None."""
    if path is None:
        return Policy()
    return parse_policy(path.read_text(), str(path), channels)


def parse_policy(text: str, file: str, channels: tuple[str, ...]) -> Policy:
    problems: list[Problem] = []

    def problem(node: yaml.Node | None, message: str, hint: str = "") -> None:
        mark = node.start_mark if node is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problems.append(Problem(file, line, col, message, hint))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise JourneyValidationError([Problem(file, line, col, f"not YAML: {exc}")]) from None
    caps: list[Cap] = []
    quiet: QuietHours | None = None
    if root is not None:
        top = _mapping(root, "the policy", problem)
        for key, (knode, vnode) in top.items():
            if key not in _TOP:
                problem(knode, f"unknown key {key!r}", f"known keys: {', '.join(sorted(_TOP))}")
            elif key == "caps":
                caps = _caps(vnode, channels, problem)
            else:
                quiet = _quiet(vnode, problem)
    if problems:
        raise JourneyValidationError(problems)
    return Policy(tuple(caps), quiet)


def _mapping(node: yaml.Node, what: str, problem: Any) -> dict[str, tuple[yaml.Node, Any]]:
    if not isinstance(node, yaml.MappingNode):
        problem(node, f"{what} must be a mapping")
        return {}
    return {str(k.value): (k, v) for k, v in node.value}


def _caps(node: yaml.Node, channels: tuple[str, ...], problem: Any) -> list[Cap]:
    if not isinstance(node, yaml.SequenceNode):
        problem(node, "caps must be a list", "caps: [{max: 3, per: 1d}]")
        return []
    caps = []
    for item in node.value:
        fields = _mapping(item, "a cap", problem)
        for key, (knode, _) in fields.items():
            if key not in _CAP:
                problem(knode, f"unknown key {key!r} in a cap", "a cap has max, per, channel")
        if "max" not in fields or "per" not in fields:
            problem(item, "a cap needs max and per", "e.g. {max: 3, per: 1d}")
            continue
        max_node, per_node = fields["max"][1], fields["per"][1]
        try:
            most = int(max_node.value)
            if most < 1:
                raise ValueError
        except ValueError:
            problem(max_node, f"max must be a whole number >= 1, got {max_node.value!r}")
            continue
        try:
            per = parse_duration(str(per_node.value))
            if per <= 0:
                raise ValueError(f"per must be positive, got {per_node.value!r}")
        except ValueError as exc:
            problem(per_node, str(exc))
            continue
        channel = ALL_CHANNELS
        if "channel" in fields:
            cnode = fields["channel"][1]
            channel = str(cnode.value)
            if channel not in channels:
                problem(cnode, f"unknown channel {channel!r}", f"known: {', '.join(channels)}")
                continue
        caps.append(Cap(most, per, channel))
    return caps


def _quiet(node: yaml.Node, problem: Any) -> QuietHours | None:
    fields = _mapping(node, "quiet_hours", problem)
    minutes = {}
    for key in ("from", "to"):
        if key not in fields:
            problem(node, f"quiet_hours needs {key!r}", 'e.g. {from: "21:00", to: "08:00"}')
            return None
        vnode = fields[key][1]
        try:
            hh, mm = str(vnode.value).split(":")
            value = int(hh) * 60 + int(mm)
            if not (0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise ValueError
        except ValueError:
            problem(vnode, f"quiet_hours.{key} must be a time HH:MM, got {vnode.value!r}")
            return None
        minutes[key] = value
    for key in fields:
        if key not in ("from", "to"):
            problem(fields[key][0], f"unknown key {key!r} in quiet_hours", "use from and to")
    if minutes["from"] == minutes["to"]:
        problem(node, "quiet_hours from and to are the same time", "give a real window")
        return None
    return QuietHours(minutes["from"], minutes["to"])
