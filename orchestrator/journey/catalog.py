"""The set of journeys a worker runs: every loaded version, indexed by event name.

Several versions of one journey may be loaded at once (one file per version): the
highest is *current* and takes new entries; older ones keep serving the instances
pinned to them until those finish or are migrated (journeys/README.md, Versions).

The indexes let the core skip journeys an event cannot affect: ``by_trigger`` for
entries, ``silence_by_event``/``silence_any`` for inactivity timers. Live instances are
checked against ``JourneyPlan.listens``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.policy import Policy
from orchestrator.journey.compile import compile_document
from orchestrator.journey.parse import Document, parse_text, read_documents
from orchestrator.journey.plan import JourneyPlan
from orchestrator.journey.problems import JourneyValidationError, Problem
from orchestrator.records import CHANNELS

#: Journey files are the YAML files of a directory (searched recursively).
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class DedupWindow:
    """How many recent event ids each customer's state remembers, and for how long.

    At-least-once delivery replays events shortly after a crash or rebalance; the
    window must cover that, not history. Larger windows cost state size per customer.
    """

    max_ids: int = 128
    max_age_ms: int = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Catalog:
    """Immutable compiled journeys. Build with ``load_catalog`` or ``Catalog.of``."""

    plans: Mapping[tuple[str, int], JourneyPlan]
    current: Mapping[str, JourneyPlan]
    by_trigger: Mapping[str, tuple[JourneyPlan, ...]]
    silence_by_event: Mapping[str, tuple[JourneyPlan, ...]]
    silence_any: tuple[JourneyPlan, ...]
    dedup: DedupWindow = field(default_factory=DedupWindow)
    paused: frozenset[str] = frozenset()
    #: The contact policy over all journeys (no caps, no quiet hours by default).
    policy: Policy = field(default_factory=Policy)

    @classmethod
    def of(
        cls,
        plans: Iterable[JourneyPlan],
        dedup: DedupWindow | None = None,
        paused: Collection[str] = (),
        policy: Policy | None = None,
    ) -> Catalog:
        """Index ``plans`` (ids and versions must be unique). A paused journey takes no
        new entries; customers already inside carry on."""
        paused = frozenset(paused)
        by_key = {(p.id, p.version): p for p in plans}
        current: dict[str, JourneyPlan] = {}
        for p in by_key.values():
            if p.id not in current or p.version > current[p.id].version:
                current[p.id] = p
        ordered = sorted(current.values(), key=lambda p: (-p.priority, p.id))
        triggers: dict[str, list[JourneyPlan]] = defaultdict(list)
        silence: dict[str, list[JourneyPlan]] = defaultdict(list)
        silence_any = []
        for p in ordered:
            if p.id in paused:
                continue
            if p.entry.event is not None:
                triggers[p.entry.event].append(p)
            elif p.entry.silence_events:
                for name in p.entry.silence_events:
                    silence[name].append(p)
            else:
                silence_any.append(p)
        return cls(
            plans=by_key,
            current=current,
            by_trigger={k: tuple(v) for k, v in triggers.items()},
            silence_by_event={k: tuple(v) for k, v in silence.items()},
            silence_any=tuple(silence_any),
            dedup=dedup or DedupWindow(),
            paused=paused,
            policy=policy or Policy(),
        )

    @classmethod
    def from_yaml(cls, *texts: str, channels: Collection[str] = CHANNELS) -> Catalog:
        """A catalog from journey YAML held in strings (tests, notebooks)."""
        docs: list[Document] = []
        problems: list[Problem] = []
        for i, text in enumerate(texts):
            d, p = parse_text(text, f"<journey {i + 1}>")
            docs.extend(d)
            problems.extend(p)
        return _build(docs, problems, channels)

    def plan(self, journey_id: str, version: int) -> JourneyPlan | None:
        return self.plans.get((journey_id, version))

    def with_dedup(self, dedup: DedupWindow) -> Catalog:
        return Catalog.of(self.plans.values(), dedup, self.paused, self.policy)

    def with_policy(self, policy: Policy) -> Catalog:
        return Catalog.of(self.plans.values(), self.dedup, self.paused, policy)

    def __len__(self) -> int:
        """The number of journeys (not versions)."""
        return len(self.current)


def catalog_from_sources(
    files: Sequence[str | Path],
    texts: Sequence[tuple[str, str]] = (),
    *,
    paused: Collection[str] = (),
    channels: Collection[str] = CHANNELS,
) -> Catalog:
    """Journeys from files plus ``(name, yaml)`` texts (e.g. deployed from Kafka).

    A text defining the same id and version as a file replaces the file's definition,
    so a deployment can correct a version shipped with the worker.
    """
    from_texts: list[Document] = []
    problems: list[Problem] = []
    for name, text in texts:
        d, p = parse_text(text, name)
        from_texts.extend(d)
        problems.extend(p)
    overridden = {_key(d) for d in from_texts}
    docs: list[Document] = []
    paths, more = journey_files(files)
    problems.extend(more)
    for f in paths:
        d, p = read_documents(f)
        docs.extend(x for x in d if _key(x) not in overridden)
        problems.extend(p)
    plans, more = check_documents(docs + from_texts, channels)
    problems.extend(more)
    if problems:
        raise JourneyValidationError(problems)
    return Catalog.of(plans, paused=paused)


def _key(doc: Document) -> tuple[str, int] | None:
    data = doc.data
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return (data["id"], data.get("version", 0))
    return None


def journey_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[Problem]]:
    """The journey files named by ``paths`` (files, or directories searched for YAML)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), 0, 0, "no such file or directory", "check the path"))
    return files, problems


def load_catalog(paths: Sequence[str | Path], channels: Collection[str] = CHANNELS) -> Catalog:
    """Parse, check and compile every journey under ``paths``.

    Raises ``JourneyValidationError`` listing every problem when any file is invalid:
    a worker must not start with half its journeys.
    """
    files, problems = journey_files(paths)
    docs: list[Document] = []
    for f in files:
        d, p = read_documents(f)
        docs.extend(d)
        problems.extend(p)
    return _build(docs, problems, channels)


def check_documents(
    docs: Sequence[Document], channels: Collection[str] = CHANNELS
) -> tuple[list[JourneyPlan], list[Problem]]:
    """Compile documents and check them against each other (ids, versions, migrations)."""
    plans: list[JourneyPlan] = []
    problems: list[Problem] = []
    first: dict[tuple[str, int], Document] = {}
    for doc in docs:
        if not isinstance(doc.data, dict) or not isinstance(doc.data.get("id"), str):
            continue  # the schema check has reported it
        plan = None
        if doc.valid:  # else the schema check has reported what is wrong
            plan, p = compile_document(doc, channels)
            problems.extend(p)
        key: tuple[str, int] = (doc.data["id"], doc.data.get("version", 0))
        if key in first:
            other = first[key]
            line, _ = other.where(("id",))
            problems.append(
                doc.problem(
                    ("id",),
                    f"duplicate journey {key[0]!r} version {key[1]}",
                    f"also defined at {other.file}:{line}; give a new version a higher number",
                )
            )
            continue
        first[key] = doc
        if plan is not None:
            plans.append(plan)
    by_key = {(p.id, p.version): p for p in plans}
    for plan in plans:
        for m in plan.migrations.values():
            old = by_key.get((plan.id, m.from_version))
            if old is None:
                continue
            doc = first[(plan.id, plan.version)]
            i = next(i for i, x in enumerate(doc.data["migrations"]) if x["from"] == m.from_version)
            for step in m.steps:
                if step not in old.steps:
                    problems.append(
                        doc.problem(
                            ("migrations", i, "steps", step),
                            f"version {m.from_version} of {plan.id!r} has no step {step!r}",
                            f"its steps are: {', '.join(old.steps)}",
                            key=True,
                        )
                    )
    return plans, problems


def _build(docs: Sequence[Document], problems: list[Problem], channels: Collection[str]) -> Catalog:
    plans, more = check_documents(docs, channels)
    problems = problems + more
    if problems:
        raise JourneyValidationError(problems)
    return Catalog.of(plans)
