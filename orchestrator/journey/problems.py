"""What is wrong with a journey file, said so a data engineer can fix it.

Every check (YAML syntax, schema, graph, CEL, channels) reports ``Problem`` values
instead of raising at the first one, so ``rota validate`` shows everything wrong with a
file in one run. ``JourneyValidationError`` carries them to callers that must refuse to
start (the worker, ``rota run``, ``rota simulate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One error at one place. ``line`` and ``column`` are 1-based (0 = unknown)."""

    file: str
    line: int
    column: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.message}" + (f" ({self.hint})" if self.hint else "")


class JourneyValidationError(Exception):
    """Journeys that must not run. ``problems`` lists every error found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
