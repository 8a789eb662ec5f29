"""Compiled journeys: immutable plans the decision core runs.

A ``JourneyPlan`` is what a journey file means once checked: durations in milliseconds,
conditions compiled to CEL programs, step references resolved, event names the journey
listens to collected for indexing. One plan per (journey id, version); plans never
change after compilation, so they can be shared by every customer and every thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from orchestrator.journey.conditions import Condition
from orchestrator.records import Scalar

STAGES: tuple[str, ...] = ("awareness", "consideration", "purchase", "retention", "advocacy")


@dataclass(frozen=True, slots=True)
class ActionStep:
    """Send on ``channels[0]``, or on the first available of ``channels`` when
    ``best_of`` is set (a preference list)."""

    name: str
    channels: tuple[str, ...]
    best_of: bool
    template: str | None
    offer: str | None
    params: Mapping[str, Scalar]
    priority: int
    expires_in: int | None
    next: str
    #: ``marketing`` (the contact policy applies) or ``transactional`` (only a working
    #: contact point is needed: no consent, caps or quiet hours).
    category: str = "marketing"
    #: What a frequency cap does to this action: ``defer`` it or ``drop`` it.
    if_capped: str = "defer"
    #: With ``channels``: ``first`` reachable in list order, or the reachable one the
    #: customer is most engaged on, ``engaged`` (ties: list order).
    choose: str = "first"
    #: Candidate offers, one chosen per action by a Thompson-sampling bandit
    #: (``orchestrator.core.bandit``), learning per value of the ``segment_by`` trait.
    offers: tuple[str, ...] = ()
    segment_by: str | None = None


@dataclass(frozen=True, slots=True)
class WaitStep:
    """Exactly one of ``duration``, ``until_time`` (minutes after local midnight) or
    ``until_trait`` is set; ``offset`` shifts an ``until_trait`` date."""

    name: str
    duration: int | None
    until_time: int | None
    until_trait: str | None
    offset: int
    next: str


@dataclass(frozen=True, slots=True)
class WaitForStep:
    name: str
    event: str
    condition: Condition | None
    timeout: int
    on_event: str
    on_timeout: str


@dataclass(frozen=True, slots=True)
class BranchStep:
    name: str
    cases: tuple[tuple[Condition, str], ...]
    default: str


@dataclass(frozen=True, slots=True)
class Variant:
    """``upper`` is the cumulative weight bound (out of 100) of this variant's bucket."""

    name: str
    upper: float
    next: str


HOLDOUT = "holdout"


@dataclass(frozen=True, slots=True)
class SplitStep:
    """Variants (the holdout last, named ``holdout``) by cumulative weight."""

    name: str
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class UpdateStep:
    name: str
    traits: Mapping[str, Scalar]
    stage: str | None
    next: str


@dataclass(frozen=True, slots=True)
class EndStep:
    name: str


Step: TypeAlias = (
    ActionStep | WaitStep | WaitForStep | BranchStep | SplitStep | UpdateStep | EndStep
)

StepType: TypeAlias = Literal["action", "wait", "wait_for", "branch", "split", "update", "end"]
_STEP_TYPES: Mapping[type, StepType] = {
    ActionStep: "action",
    WaitStep: "wait",
    WaitForStep: "wait_for",
    BranchStep: "branch",
    SplitStep: "split",
    UpdateStep: "update",
    EndStep: "end",
}


def step_type(step: Step) -> StepType:
    """The step's ``type:`` in the journey file."""
    return _STEP_TYPES[type(step)]


@dataclass(frozen=True, slots=True)
class Entry:
    """How customers enter: on ``event`` or after ``silence_for`` ms without any of
    ``silence_events`` (any event when empty)."""

    event: str | None
    silence_events: tuple[str, ...]
    silence_for: int | None
    condition: Condition | None
    segment: Condition | None
    reentry: str  # never | cooldown | always
    cooldown: int
    max_live: int


@dataclass(frozen=True, slots=True)
class ExitRule:
    event: str | None
    condition: Condition | None


@dataclass(frozen=True, slots=True)
class Goal:
    event: str
    condition: Condition | None
    within: int | None


@dataclass(frozen=True, slots=True)
class Migration:
    """Moves instances of version ``from_version`` to this plan: old step -> new step."""

    from_version: int
    steps: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class JourneyPlan:
    id: str
    version: int
    name: str
    description: str
    owner: str
    priority: int
    stage: str | None
    entry: Entry
    exits: tuple[ExitRule, ...]
    goal: Goal | None
    start: str
    steps: Mapping[str, Step]
    migrations: Mapping[int, Migration]
    source: str = ""
    #: Event names that can affect a live instance (waits, exits, goal).
    listens: frozenset[str] = field(default=frozenset())
    #: True when an exit rule has a condition but no event: every event must be checked.
    exit_on_any: bool = False

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    def reacts_to(self, event: str) -> bool:
        """Whether an event of this name can affect a live instance of this plan."""
        return self.exit_on_any or event in self.listens
