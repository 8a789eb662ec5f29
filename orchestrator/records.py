"""The records that cross every boundary: touchpoints in, next-best-actions out.

These records mirror the Avro schemas in ``schemas/`` field for field; the wire
codec (``orchestrator.wire``) converts between them and bytes, the JSON form
(``to_json``/``from_json``) is what files, ``rota simulate`` and humans use. Times are
integer milliseconds since the Unix epoch (UTC) everywhere inside the engine; the JSON
form shows them as ISO-8601 strings and accepts either.

Touchpoints and actions are msgspec Structs, immutable by convention, like the core's
state (``orchestrator.core.state`` says why): one of each is built per record consumed
or emitted. ``Context`` is shared between touchpoints and is frozen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar

from msgspec import Struct, field
from msgspec.structs import asdict, fields

#: Scalar values carried in properties, traits and payloads. Nested objects and
#: arrays travel as JSON-encoded strings (documented in schemas/README.md).
Scalar: TypeAlias = bool | int | float | str | None

CHANNELS: tuple[str, ...] = (
    "web",
    "app",
    "email",
    "sms",
    "push",
    "in_app",
    "social",
    "chat",
    "call_centre",
    "store",
    "crm",
    "webhook",
    "log",
)
"""Channel names known to the engine. Connectors may add more; journeys naming an
unknown channel are rejected by validation unless it is configured."""

TOUCHPOINT_TYPES: tuple[str, ...] = (
    "track",
    "identify",
    "page",
    "screen",
    "alias",
    "group",
    "outcome",
)


def require_fields(cls: type[Struct], names: Sequence[str], source: str) -> None:
    """Refuse (``RuntimeError``) a record type whose fields are not ``names``, in order.
    For the classes built from or stored as their fields by position - an Avro
    schema's records, the customer state's parts - so that a class and what it is read
    from cannot drift apart silently. Called once, at import."""
    found = list(cls.__struct_fields__)
    if found != list(names):
        raise RuntimeError(f"{cls.__name__} fields {found} differ from {source} {list(names)}")


class Context(Struct, frozen=True, gc=False):
    """Where and how the customer was when the event happened."""

    locale: str | None = None
    timezone: str | None = None
    device_id: str | None = None
    device_type: str | None = None
    os: str | None = None
    app: str | None = None

    def present(self) -> dict[str, str]:
        """The fields that are set: the JSON form and conditions' ``event.context``."""
        return {k: v for k, v in asdict(self).items() if v is not None}


class Touchpoint(Struct, gc=False):
    """One thing a customer did or that happened to them, on one channel."""

    event_id: str
    type: str
    name: str
    channel: str
    occurred_at: int
    customer_id: str | None = None
    anonymous_id: str | None = None
    received_at: int | None = None
    properties: Mapping[str, Scalar] = field(default_factory=dict)
    traits: Mapping[str, Scalar] = field(default_factory=dict)
    context: Context = field(default_factory=Context)
    source: str | None = None
    action_id: str | None = None

    @property
    def subject(self) -> str:
        """The state key: the known customer id, else ``anon:<anonymous id>``.

        Anonymous and known ids live in separate key spaces so an anonymous id can
        never collide with a customer id.
        """
        if self.customer_id:
            return self.customer_id
        if self.anonymous_id:
            return f"anon:{self.anonymous_id}"
        raise ValueError(f"touchpoint {self.event_id!r} has neither customer_id nor anonymous_id")

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Touchpoint:
        return _from_json(cls, data)


class NextBestAction(Struct, gc=False):
    """What the engine decided should happen next for one customer, on one channel.

    ``action_id`` is a pure function of (customer, journey, version, instance, step),
    so a replay after a crash yields the same id and connectors can de-duplicate.
    """

    action_id: str
    customer_id: str
    journey_id: str
    journey_version: int
    instance_id: str
    step: str
    channel: str
    created_at: int
    template: str | None = None
    offer: str | None = None
    payload: Mapping[str, Scalar] = field(default_factory=dict)
    priority: int = 0
    expires_at: int | None = None
    reason: str = ""
    trigger_event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NextBestAction:
        return _from_json(cls, data)


_R = TypeVar("_R", "Touchpoint", "NextBestAction")

_TIME_FIELDS = frozenset({"occurred_at", "received_at", "created_at", "expires_at"})


def iso(ms: int) -> str:
    """Milliseconds since the epoch as an ISO-8601 UTC string with millisecond precision."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_time(value: str | int | float) -> int:
    """ISO-8601 (a missing zone means UTC) or epoch milliseconds to epoch milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return int(value)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _to_json(record: Touchpoint | NextBestAction) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in record.__struct_fields__:
        value = getattr(record, name)
        if value is None:
            continue
        if name in _TIME_FIELDS:
            value = iso(value)
        elif isinstance(value, Context):
            value = value.present()
            if not value:
                continue
        elif isinstance(value, Mapping):
            if not value:
                continue
            value = dict(value)
        out[name] = value
    return out


def _from_json(cls: type[_R], data: Mapping[str, Any]) -> _R:
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown field(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if value is None:
            continue
        if name in _TIME_FIELDS:
            value = parse_time(value)
        elif name == "context":
            if not isinstance(value, Mapping):
                raise ValueError("context must be an object")
            value = Context(**value)
        elif name in ("properties", "traits", "payload"):
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} must be an object")
            value = {str(k): to_scalar(v) for k, v in value.items()}
        kwargs[name] = value
    missing = [f.name for f in known.values() if f.required and f.name not in kwargs]
    if missing:
        raise ValueError(f"missing field(s) for {cls.__name__}: {', '.join(missing)}")
    return cls(**kwargs)


_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def to_scalar(value: Any) -> Scalar:
    """A JSON value as the scalar maps hold it: nested objects and arrays become JSON
    strings with sorted keys, integers beyond Avro's ``long`` decimal strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _LONG_MIN <= value <= _LONG_MAX else str(value)
    if value is None or isinstance(value, bool | float | str):
        return value
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
