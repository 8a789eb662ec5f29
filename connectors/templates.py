"""Message content from templates: sandboxed Jinja2 over the action's payload.

A template is a set of files named ``<template>.<part>`` in one directory, e.g. for email
``welcome-v1.subject.txt``, ``welcome-v1.txt`` and ``welcome-v1.html``; the action's
``template`` field names it. Templates are written by marketers, not programmers, so they
run in Jinja2's ``SandboxedEnvironment`` (no attribute access to Python internals, no
imports) and HTML parts are autoescaped: a first name of ``<script>`` arrives as text.
Variables that are not in the payload are errors (``StrictUndefined``) rather than
silent blanks - ``{{ first_name | default("there") }}`` says what to do instead.

Every file is compiled when the connector starts, so a syntax error stops a deployment
with the file and line, not the first customer's message. Each connector ships a built-in
``default`` template, used when no directory is configured, or when the directory has no
``default`` of its own and the action names none; an action naming a template that does
not exist is rejected (sending generic content instead would be worse).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    DictLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import SandboxedEnvironment

from connectors.base import ConfigError
from orchestrator.records import NextBestAction, Scalar

DEFAULT = "default"


class RenderError(ValueError):
    """A template could not be rendered for this action (missing variable, unknown
    template, a sandbox violation): a permanent problem of the action or template."""


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith(".html")


class Templates:
    def __init__(
        self,
        directory: Path | None,
        parts: tuple[str, ...],
        builtin: Mapping[str, str],
        *,
        variable: str = "",
    ) -> None:
        """``parts`` are the file suffixes a template may have (``subject.txt``,
        ``txt``, ``html``); ``builtin`` maps a part to the default template's source.
        ``variable`` names the setting of ``directory`` in configuration errors."""
        self.directory = directory
        self.parts = parts
        self._variable = variable
        builtin_files = {f"{DEFAULT}.{part}": source for part, source in builtin.items()}
        loaders: list[Any] = []
        if directory is not None:
            if not directory.is_dir():
                raise ConfigError(variable, f"{directory} is not a directory")
            loaders.append(FileSystemLoader(str(directory)))
        loaders.append(DictLoader(builtin_files))
        self._env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=_autoescape,
            undefined=StrictUndefined,
            auto_reload=False,
            keep_trailing_newline=True,
        )
        self._compiled: dict[str, Template] = {}
        files = self._files()
        own_default = any(self._split(f)[0] == DEFAULT for f in files)
        for file_name in [*files, *([] if own_default else builtin_files)]:
            self._compile(file_name)

    def names(self) -> list[str]:
        """Templates available (``default`` included)."""
        out = {DEFAULT}
        for file_name in self._files():
            name, _part = self._split(file_name)
            out.add(name)
        return sorted(out)

    def render(self, name: str, context: Mapping[str, Any]) -> dict[str, str]:
        """Every part ``name`` has, rendered; raises ``RenderError``."""
        rendered: dict[str, str] = {}
        for part in self.parts:
            template = self._compiled.get(f"{name}.{part}")
            if template is None:
                continue
            try:
                rendered[part] = template.render(context)
            except TemplateError as exc:
                raise RenderError(f"template {name}.{part}: {exc}") from None
        if not rendered:
            where = self.directory or "the built-in templates"
            raise RenderError(f"no template {name!r} in {where}")
        return rendered

    def render_action(self, action: NextBestAction, **extra: Scalar) -> dict[str, str]:
        """The action's template (``default`` when it names none) over its ``context``."""
        return self.render(action.template or DEFAULT, context(action, **extra))

    def _files(self) -> list[str]:
        if self.directory is None:
            return []
        return sorted(
            p.name
            for p in self.directory.iterdir()
            if p.is_file() and self._split(p.name)[1] is not None
        )

    def _split(self, file_name: str) -> tuple[str, str | None]:
        # Longest suffix first: "welcome.subject.txt" is part "subject.txt", not "txt".
        for part in sorted(self.parts, key=len, reverse=True):
            if file_name.endswith(f".{part}") and len(file_name) > len(part) + 1:
                return file_name[: -len(part) - 1], part
        return file_name, None

    def _compile(self, file_name: str) -> None:
        try:
            self._compiled[file_name] = self._env.get_template(file_name)
        except TemplateSyntaxError as exc:
            raise ConfigError(
                self._variable or "templates",
                f"{file_name}, line {exc.lineno}: {exc.message}",
            ) from None
        except TemplateNotFound:  # pragma: no cover - listed a moment ago
            raise ConfigError(self._variable, f"{file_name} disappeared") from None


def context(action: NextBestAction, **extra: Scalar) -> dict[str, Any]:
    """What a template sees: the payload's keys at the top level (``first_name``) and as
    ``payload``; ``action`` (ids, journey, step, template, offer); ``offer`` unless the
    payload has its own; then ``extra`` (e.g. ``unsubscribe_url``)."""
    payload: dict[str, Scalar] = dict(action.payload)
    about = {
        "action_id": action.action_id,
        "journey_id": action.journey_id,
        "journey_version": action.journey_version,
        "step": action.step,
        "template": action.template,
        "offer": action.offer,
        "channel": action.channel,
    }
    out: dict[str, Any] = {"offer": action.offer, **payload}
    out.update(payload=payload, action=about, **extra)
    return out


def load(
    env: Mapping[str, str], variable: str, parts: tuple[str, ...], builtin: Mapping[str, str]
) -> Templates:
    raw = env.get(variable, "").strip()
    return Templates(Path(raw) if raw else None, parts, builtin, variable=variable)
