"""One customer's state: profile, live journey instances, entry history, recent events.

This is the value the worker keeps per customer in RocksDB; ``decide`` maps it (plus an
event) to a new one. Values are immutable by convention: the ``Mapping`` fields hold
plain dicts for speed, and nothing mutates them after construction - ``decide`` builds
new ones. The classes built on every event or state read (all of them here) are not
``frozen`` for the same reason: a frozen dataclass sets each field through
``object.__setattr__``, which made building them two to three times as slow and cost
the core about a fifth of its decisions per second (measured with ``rota bench``'s core
phase). ``to_bytes`` is deterministic (orjson, sorted keys; ordered collections are
stored as lists), so equal states are equal bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from orchestrator.records import NextBestAction, Scalar

FORMAT = 1
_EMPTY: Mapping[str, Any] = {}


@dataclass(slots=True)
class Profile:
    """One view of the customer, merged from every channel's events.

    ``counts``/``last_at`` are per event name, ``last_seen`` per channel (ms). Scores are
    the latest received (journeys/README.md lists the events that set each field).
    """

    traits: Mapping[str, Scalar] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    last_at: Mapping[str, int] = field(default_factory=dict)
    last_seen: Mapping[str, int] = field(default_factory=dict)
    first_seen_at: int | None = None
    last_event_at: int | None = None
    order_count: int = 0
    total_spent: float = 0.0
    nps: float | None = None
    csat: float | None = None
    effort: float | None = None
    stage: str | None = None
    timezone: str | None = None
    unsubscribed: tuple[str, ...] = ()
    locale: str | None = None
    #: Per channel: [score, at] - customer-initiated events on the channel, each worth 1
    #: and halving every ``profile.ENGAGEMENT_HALF_LIFE`` (value as of ``at``).
    engagement: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    #: Per channel: [subscribed | unsubscribed, source, at] of the last consent change.
    consent: Mapping[str, tuple[str, str, int]] = field(default_factory=dict)

    @property
    def average_order_value(self) -> float:
        return self.total_spent / self.order_count if self.order_count else 0.0


@dataclass(slots=True)
class Instance:
    """A customer's live passage through one journey version.

    ``timer_id``/``due_at`` name the one timer the instance waits on (a wait, or a
    wait_for's timeout); a fired timer that does not match both is stale and ignored.
    ``visits`` counts arrivals per step, so a step reached twice makes a new action id.
    """

    journey_id: str
    version: int
    instance_id: str
    step: str
    entered_at: int
    step_at: int
    variant: str | None = None
    visits: Mapping[str, int] = field(default_factory=dict)
    timer_id: str | None = None
    due_at: int | None = None
    moves: int = 0
    last_action_id: str | None = None

    # The changes a decision makes on every step, built directly: ``dataclasses.replace``
    # costs about three times as much, and the core calls these several times an event.

    def at_step(self, step: str, at: int, visits: Mapping[str, int]) -> Instance:
        """Moved to ``step`` at ``at``, no longer waiting on a timer."""
        return Instance(
            self.journey_id, self.version, self.instance_id, step, self.entered_at, at,
            self.variant, visits, None, None, self.moves + 1, self.last_action_id,
        )  # fmt: skip

    def waiting(self, timer_id: str, due_at: int) -> Instance:
        return Instance(
            self.journey_id, self.version, self.instance_id, self.step, self.entered_at,
            self.step_at, self.variant, self.visits, timer_id, due_at, self.moves,
            self.last_action_id,
        )  # fmt: skip

    def untimed(self) -> Instance:
        """No longer waiting on a timer (it fired, or the awaited event came)."""
        return Instance(
            self.journey_id, self.version, self.instance_id, self.step, self.entered_at,
            self.step_at, self.variant, self.visits, None, None, self.moves,
            self.last_action_id,
        )  # fmt: skip

    def acted(self, action_id: str) -> Instance:
        return Instance(
            self.journey_id, self.version, self.instance_id, self.step, self.entered_at,
            self.step_at, self.variant, self.visits, self.timer_id, self.due_at, self.moves,
            action_id,
        )  # fmt: skip


@dataclass(slots=True)
class History:
    """What re-entry rules need to know about one journey for one customer."""

    entries: int = 0
    last_entry_at: int | None = None
    last_exit_at: int | None = None


@dataclass(slots=True)
class SentAction:
    """An action the core decided, kept so that "why did they get that message?" has an
    answer after the fact (the customer inspector)."""

    action_id: str
    journey_id: str
    step: str
    channel: str
    at: int
    reason: str
    #: The bandit arm that chose its offer, and whether it has been rewarded.
    arm: str | None = None
    won: bool = False


#: Actions remembered per customer, newest last.
RECENT_ACTIONS = 5


@dataclass(slots=True)
class Pending:
    """An action the contact policy deferred (quiet hours, a frequency cap): it is judged
    again when its timer (``defer:<action id>``) fires."""

    action: NextBestAction
    category: str
    if_capped: str


@dataclass(slots=True)
class CustomerState:
    """Everything the core knows about one customer.

    ``silence`` maps a journey id to the due time of its inactivity timer
    (``silence:<journey id>``). ``seen`` maps recent event ids to their time, oldest
    first (the de-duplication window).
    """

    customer_id: str
    profile: Profile = field(default_factory=Profile)
    instances: tuple[Instance, ...] = ()
    history: Mapping[str, History] = field(default_factory=dict)
    silence: Mapping[str, int] = field(default_factory=dict)
    seen: Mapping[str, int] = field(default_factory=dict)
    sent: tuple[SentAction, ...] = ()
    pending: tuple[Pending, ...] = ()
    #: Send times of marketing actions per cap scope (``*`` or a channel), oldest first.
    contacts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    #: Other keys merged into this customer (``anon:<anonymous id>``), sorted.
    identities: tuple[str, ...] = ()

    @classmethod
    def empty(cls, customer_id: str) -> CustomerState:
        """A customer seen for the first time. Shares one empty profile and empty
        mappings (nothing mutates them), which makes it ten times cheaper than the
        field defaults - and most events of a busy stream come from new customers."""
        return cls(customer_id, _EMPTY_PROFILE, (), _EMPTY, _EMPTY, _EMPTY, (), (), _EMPTY, ())

    def to_bytes(self) -> bytes:
        return orjson.dumps(_encode(self), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        return _decode(orjson.loads(data))


_EMPTY_PROFILE = Profile()

# Short keys keep the state small: it is written once per customer per batch and
# changelogged to Kafka. None and default values are left out.


def _encode(s: CustomerState) -> dict[str, Any]:
    """What ``to_bytes`` writes. Tuples are left for orjson to write as arrays, and each
    field is tested on its own: this runs once per customer per batch, and building
    lists and a table of pairs to loop over cost more than the rest of it."""
    p = s.profile
    prof: dict[str, Any] = {}
    if p.traits:
        prof["tr"] = p.traits
    if p.counts:
        prof["n"] = p.counts
    if p.last_at:
        prof["la"] = p.last_at
    if p.last_seen:
        prof["ls"] = p.last_seen
    if p.first_seen_at is not None:
        prof["fs"] = p.first_seen_at
    if p.last_event_at is not None:
        prof["le"] = p.last_event_at
    if p.nps is not None:
        prof["nps"] = p.nps
    if p.csat is not None:
        prof["csat"] = p.csat
    if p.effort is not None:
        prof["ces"] = p.effort
    if p.stage is not None:
        prof["st"] = p.stage
    if p.timezone is not None:
        prof["tz"] = p.timezone
    if p.unsubscribed:
        prof["un"] = p.unsubscribed
    if p.locale is not None:
        prof["lc"] = p.locale
    if p.engagement:
        prof["en"] = p.engagement
    if p.consent:
        prof["cs"] = p.consent
    if p.order_count:
        prof["oc"] = p.order_count
        prof["ts"] = p.total_spent
    out: dict[str, Any] = {"v": FORMAT, "c": s.customer_id, "p": prof}
    if s.instances:
        out["i"] = [
            (
                i.journey_id, i.version, i.instance_id, i.step, i.entered_at, i.step_at,
                i.variant, i.visits, i.timer_id, i.due_at, i.moves, i.last_action_id,
            )
            for i in s.instances
        ]  # fmt: skip
    if s.history:
        out["h"] = {k: (h.entries, h.last_entry_at, h.last_exit_at) for k, h in s.history.items()}
    if s.silence:
        out["si"] = s.silence
    if s.seen:
        out["e"] = list(s.seen.items())
    if s.sent:
        out["a"] = [
            (a.action_id, a.journey_id, a.step, a.channel, a.at, a.reason, a.arm, a.won)
            if a.arm
            else (a.action_id, a.journey_id, a.step, a.channel, a.at, a.reason)
            for a in s.sent
        ]
    if s.pending:
        out["pd"] = [(p.action.to_json(), p.category, p.if_capped) for p in s.pending]
    if s.contacts:
        out["ct"] = s.contacts
    if s.identities:
        out["id"] = s.identities
    return out


def _decode(d: dict[str, Any]) -> CustomerState:
    if d.get("v") != FORMAT:
        raise ValueError(f"unknown customer state format {d.get('v')!r}")
    p = d.get("p", _EMPTY)
    get = p.get
    engagement = get("en")
    consent = get("cs")
    profile = Profile(
        get("tr", {}), get("n", {}), get("la", {}), get("ls", {}), get("fs"), get("le"),
        get("oc", 0), get("ts", 0.0), get("nps"), get("csat"), get("ces"), get("st"),
        get("tz"), tuple(get("un", ())), get("lc"),
        {k: (v[0], v[1]) for k, v in engagement.items()} if engagement else {},
        {k: (v[0], v[1], v[2]) for k, v in consent.items()} if consent else {},
    )  # fmt: skip
    history = d.get("h")
    sent = d.get("a")
    pending = d.get("pd")
    contacts = d.get("ct")
    return CustomerState(
        d["c"],
        profile,
        tuple(Instance(*row) for row in d["i"]) if "i" in d else (),
        {k: History(*v) for k, v in history.items()} if history else {},
        d.get("si", {}),
        dict(d["e"]) if "e" in d else {},
        tuple(SentAction(*row) for row in sent) if sent else (),
        tuple(Pending(NextBestAction.from_json(a), c, i) for a, c, i in pending) if pending else (),
        {scope: tuple(times) for scope, times in contacts.items()} if contacts else {},
        tuple(d.get("id", ())),
    )
