"""One customer's state: profile, live journey instances, entry history, recent events.

This is the value the worker keeps per customer in RocksDB; ``decide`` maps it (plus an
event) to a new one. Values are immutable by convention: the ``Mapping`` fields hold
plain dicts for speed, and nothing mutates them after construction - ``decide`` builds
new ones.

The classes are msgspec ``Struct``s, as are the other values built per event (the
touchpoint, the action, the decision and its parts): they are built on every event and
state read, and a Struct is built in C - an ``Instance`` in ~90 ns, against ~425 as a
slotted dataclass (a ``frozen`` dataclass, which sets each field through
``object.__setattr__``, was two to three times slower still) - and its fields read as
fast. They are not ``frozen``, so a decision may adjust its own working copies. They are
``gc=False``: a state is a tree of values built from values, never a cycle, so Python's
cyclic collector need not track the millions the worker makes (a cycle through them
would leak instead; the benchmark's core phase walks its states for cycles and the
tests assert it finds none).

``to_bytes`` writes JSON (msgspec) in the order the state holds (a state read back writes
the same bytes); ``from_bytes`` reads every format written so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import orjson
from msgspec import Struct, field
from msgspec.structs import replace

from orchestrator.records import NextBestAction, Scalar, require_fields

#: The format ``to_bytes`` writes. 1 (a JSON object of short keys, absent defaults left
#: out) is still read: a stored state is rewritten in this format when its customer's
#: state next changes.
FORMAT = 2
_EMPTY: Mapping[str, Any] = {}


class Profile(Struct, array_like=True, gc=False):
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


class Instance(Struct, array_like=True, gc=False):
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

    # The changes a decision makes on every step (several times an event), by name.

    def at_step(
        self, step: str, at: int, visits: Mapping[str, int], last_action_id: str | None
    ) -> Instance:
        """Moved to ``step`` at ``at``, no longer waiting on a timer; ``last_action_id``
        is the step's action if it sent one (the previous one otherwise)."""
        return replace(
            self, step=step, step_at=at, visits=visits, timer_id=None, due_at=None,
            moves=self.moves + 1, last_action_id=last_action_id,
        )  # fmt: skip

    def waiting(self, timer_id: str, due_at: int) -> Instance:
        return replace(self, timer_id=timer_id, due_at=due_at)

    def untimed(self) -> Instance:
        """No longer waiting on a timer (it fired, or the awaited event came)."""
        return replace(self, timer_id=None, due_at=None)


class History(Struct, array_like=True, gc=False):
    """What re-entry rules need to know about one journey for one customer."""

    entries: int = 0
    last_entry_at: int | None = None
    last_exit_at: int | None = None


class SentAction(Struct, array_like=True, gc=False):
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


class Pending(Struct, gc=False):
    """An action the contact policy deferred (quiet hours, a frequency cap): it is judged
    again when its timer (``defer:<action id>``) fires."""

    action: NextBestAction
    category: str
    if_capped: str


class CustomerState(Struct, gc=False):
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
        return _ENCODER.encode(_row(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        """Raises ``ValueError`` for bytes that are no customer state (the markers kept
        beside states in the same table among them)."""
        try:
            row = _ROW.decode(data)
        except msgspec.DecodeError as e:  # not JSON, or not format 2's row
            return _read_other(orjson.loads(data), e)
        if row[0] != FORMAT:
            return _read_other(orjson.loads(data), None)
        return _from_row(row)


_EMPTY_PROFILE = Profile()

# Format 2 is one JSON array: format, customer id, then the other fields of
# ``CustomerState`` in their order - the profile, instances, histories and recent
# actions each as an array of their fields in order (``array_like`` Structs), the
# deferred actions as their JSON form. msgspec writes it from the Structs and reads it
# straight into them, checking every field's type (over the benchmark's stored states,
# 28 % fewer instructions to read one and 24 % fewer to write one than through orjson
# and ``Cls(*row)``). Every field is written; the dicts keep their order (the
# de-duplication window's order is its age).
_Row = tuple[
    int, str, Profile, tuple[Instance, ...], dict[str, History], dict[str, int],
    dict[str, int], tuple[SentAction, ...], tuple[tuple[dict[str, Any], str, str], ...],
    dict[str, tuple[int, ...]], tuple[str, ...],
]  # fmt: skip
_ROW = msgspec.json.Decoder(_Row)
_ENCODER = msgspec.json.Encoder()


def _stored_by_position(cls: type[Struct], *names: str) -> None:
    """A field added, removed or moved in ``cls`` would misread every stored state: such
    a change needs a new format."""
    require_fields(cls, names, "the stored")


_stored_by_position(
    Profile, "traits", "counts", "last_at", "last_seen", "first_seen_at", "last_event_at",
    "order_count", "total_spent", "nps", "csat", "effort", "stage", "timezone",
    "unsubscribed", "locale", "engagement", "consent",
)  # fmt: skip
_stored_by_position(
    Instance, "journey_id", "version", "instance_id", "step", "entered_at", "step_at",
    "variant", "visits", "timer_id", "due_at", "moves", "last_action_id",
)  # fmt: skip
_stored_by_position(History, "entries", "last_entry_at", "last_exit_at")
_stored_by_position(
    SentAction, "action_id", "journey_id", "step", "channel", "at", "reason", "arm", "won"
)


def _row(s: CustomerState) -> tuple[Any, ...]:
    pending = [(x.action.to_json(), x.category, x.if_capped) for x in s.pending]
    return (
        FORMAT, s.customer_id, s.profile, s.instances, s.history, s.silence, s.seen, s.sent,
        pending, s.contacts, s.identities,
    )  # fmt: skip


def _from_row(row: _Row) -> CustomerState:
    _, customer, profile, instances, history, silence, seen, sent, pending, contacts, ids = row
    return CustomerState(
        customer, profile, instances, history, silence, seen, sent,
        tuple([Pending(NextBestAction.from_json(a), c, i) for a, c, i in pending]),
        contacts, ids,
    )  # fmt: skip


def _read_other(value: Any, problem: msgspec.DecodeError | None) -> CustomerState:
    """A state in format 1, else the ``ValueError`` that says what ``value`` is."""
    if type(value) is dict and type(value.get("v")) is int and value["v"] == 1:
        try:
            return _decode_v1(value)
        except (KeyError, TypeError, AttributeError) as e:  # fields missing or misshapen
            raise ValueError(f"a customer state in format 1 that does not read: {e!r}") from None
    found = None
    if type(value) is dict:
        found = value.get("v")
    elif type(value) is list and value:  # ``[]`` too is no state, not an IndexError
        found = value[0]
    version = found if type(found) is int else "unknown"
    detail = f": {problem}" if found == FORMAT and problem is not None else ""
    raise ValueError(
        f"not a customer state in a known format (format {version}; this version reads"
        f" 1 and {FORMAT}){detail}"
    )


# Format 1, read only: its object (short keys, defaults left out, the de-duplication
# window as pairs) is rearranged as the row of format 2 and read as one.


def _decode_v1(d: dict[str, Any]) -> CustomerState:
    get = d.get("p", _EMPTY).get
    profile = [
        get("tr", {}), get("n", {}), get("la", {}), get("ls", {}), get("fs"), get("le"),
        get("oc", 0), get("ts", 0.0), get("nps"), get("csat"), get("ces"), get("st"),
        get("tz"), get("un", ()), get("lc"), get("en", {}), get("cs", {}),
    ]  # fmt: skip
    row = [
        1, d["c"], profile, d.get("i", ()), d.get("h", {}), d.get("si", {}),
        dict(d.get("e", ())), d.get("a", ()), d.get("pd", ()), d.get("ct", {}),
        d.get("id", ()),
    ]  # fmt: skip
    return _from_row(msgspec.convert(row, _Row))
