"""Segment (and RudderStack) messages -> touchpoints. Pure: no I/O, no clock.

The mapping is a contract sources and journeys rely on (README, "HTTP ingest"):

================  ===============================================================
touchpoint        from the Segment message
================  ===============================================================
``event_id``      ``messageId`` (a random UUID if absent): SDK retries re-send the
                  same id, and the worker de-duplicates on it
``type``          the call: track, identify, page, screen, group, alias
``name``          track: ``event``; identify: ``Identified``; page: ``Page Viewed``;
                  screen: ``Screen Viewed``; group: ``Group Joined``; alias: ``Aliased``
``customer_id``   ``userId``; ``anonymous_id``: ``anonymousId`` (one is required)
``occurred_at``   ``timestamp`` corrected for the device's clock skew:
                  ``receivedAt - (sentAt - timestamp)`` when the SDK sent ``sentAt``
``received_at``   when the ingest received the request (its clock)
``channel``       from ``context``: mobile SDKs, or an iOS/Android device -> ``app``;
                  browser SDKs -> ``web``; server SDKs and anything unknown -> the
                  write key's channel
``properties``    track/page/screen ``properties`` (page/screen add ``name``,
                  ``category``); group: the group's ``traits`` plus ``group_id``;
                  alias: ``previous_id``; ``context.campaign`` adds ``utm_*``
``traits``        identify ``traits`` (the customer's; merged into the profile)
``context``       locale, timezone, device id/type, OS name, app name + version
``source``        the write key's source name
================  ===============================================================

Nested values in properties and traits (``products`` arrays, addresses) travel as
JSON strings, as everywhere on the wire (schemas/README.md). ``context.ip``,
``userAgent`` and ``context.traits`` are not kept. ``integrations`` selects
destinations in Segment; Rota honours only ``"Rota": false`` (the message is skipped).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from orchestrator.ingest.scalars import scalars
from orchestrator.ingest.writekeys import Source
from orchestrator.records import Context, Scalar, Touchpoint, parse_time

KINDS: tuple[str, ...] = ("track", "identify", "page", "screen", "group", "alias")

#: Touchpoint names of the calls that do not carry one (track carries ``event``).
NAMES: Mapping[str, str] = {
    "identify": "Identified",
    "page": "Page Viewed",
    "screen": "Screen Viewed",
    "group": "Group Joined",
    "alias": "Aliased",
}

#: Substrings of ``context.library.name`` -> channel (None: the write key's channel).
#: First match wins, so mobile names containing "js" or "java" come first.
LIBRARY_CHANNELS: tuple[tuple[str, str | None], ...] = (
    ("react-native", "app"),
    ("flutter", "app"),
    ("ios", "app"),
    ("android", "app"),
    ("swift", "app"),
    ("kotlin", "app"),
    ("xamarin", "app"),
    ("unity", "app"),
    ("analytics.js", "web"),
    ("analytics-next", "web"),
    ("javascript", "web"),
    ("rudder-sdk-js", "web"),
    ("analytics-python", None),
    ("analytics-node", None),
    ("analytics-go", None),
    ("analytics-java", None),
    ("analytics-ruby", None),
    ("analytics-php", None),
    ("analytics.net", None),
)
#: RudderStack SDKs send a top-level ``channel``.
RUDDERSTACK_CHANNELS: Mapping[str, str | None] = {"web": "web", "mobile": "app", "server": None}
MOBILE_OS = frozenset({"ios", "ipados", "android", "tvos", "watchos"})
MOBILE_DEVICES = MOBILE_OS | {"phone", "mobile", "tablet"}
_DEVICE_TYPES: Mapping[str, str] = {"ios": "mobile", "android": "mobile", "phone": "mobile"}
_CAMPAIGN = (
    ("name", "utm_campaign"),
    ("source", "utm_source"),
    ("medium", "utm_medium"),
    ("term", "utm_term"),
    ("content", "utm_content"),
)


class InvalidMessage(ValueError):
    """A message the spec does not allow; the HTTP answer is 400 with this text.

    ``index`` is the message's position in a batch (None for single calls)."""

    def __init__(self, text: str, index: int | None = None) -> None:
        super().__init__(f"batch[{index}]: {text}" if index is not None else text)
        self.index = index


def to_touchpoint(
    message: Any,
    *,
    kind: str | None,
    received_at: int,
    source: Source,
    sent_at: Any = None,
    context: Mapping[str, Any] | None = None,
    index: int | None = None,
) -> Touchpoint | None:
    """The touchpoint for one Segment message, or None if it asks not to reach Rota.

    ``kind`` is the call of a single-call endpoint (``/v1/track``); None means the
    message names its own ``type`` (``/v1/batch``). ``sent_at`` and ``context`` are
    the batch envelope's, used where the message has none. Raises ``InvalidMessage``.
    """
    if not isinstance(message, Mapping):
        raise InvalidMessage(f"a message must be a JSON object, got {_kind(message)}", index)
    call = kind or message.get("type")
    if call not in KINDS:
        raise InvalidMessage(f"type must be one of {', '.join(KINDS)}, got {call!r}", index)
    integrations = _object(message, "integrations", index)
    if integrations.get("Rota") is False:
        return None
    user_id = _identifier(message, "userId", index)
    anonymous_id = _identifier(message, "anonymousId", index)
    if user_id is None and anonymous_id is None:
        raise InvalidMessage("userId or anonymousId is required", index)
    ctx = {**(context or {}), **_object(message, "context", index)}
    properties = _scalars(_object(message, "properties", index), "properties", index)
    traits: dict[str, Scalar] = {}
    if call == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name.strip():
            raise InvalidMessage("a track call needs an event name (event)", index)
    elif call == "identify":
        name = NAMES[call]
        traits = _scalars(_object(message, "traits", index), "traits", index)
    elif call in ("page", "screen"):
        name = NAMES[call]
        for key in ("name", "category"):
            value = message.get(key)
            if isinstance(value, str) and value:
                properties.setdefault(key, value)
    elif call == "group":
        name = NAMES[call]
        group_id = _identifier(message, "groupId", index)
        if group_id is None:
            raise InvalidMessage("a group call needs groupId", index)
        group_traits = _scalars(_object(message, "traits", index), "traits", index)
        properties = {**properties, **group_traits, "group_id": group_id}
    else:  # alias
        name = NAMES[call]
        previous_id = _identifier(message, "previousId", index)
        if previous_id is None or user_id is None:
            raise InvalidMessage("an alias call needs previousId and userId", index)
        properties["previous_id"] = previous_id
    campaign = ctx.get("campaign")
    if isinstance(campaign, Mapping):
        for key, prop in _CAMPAIGN:
            value = campaign.get(key)
            if isinstance(value, str) and value:
                properties.setdefault(prop, value)
    return Touchpoint(
        event_id=_message_id(message, index),
        type=call,
        name=name,
        channel=channel_of(message, ctx, default=source.channel),
        occurred_at=occurred_at(message, received_at=received_at, sent_at=sent_at, index=index),
        customer_id=user_id,
        anonymous_id=anonymous_id,
        received_at=received_at,
        properties=properties,
        traits=traits,
        context=context_of(ctx),
        source=source.name,
    )


def occurred_at(
    message: Mapping[str, Any], *, received_at: int, sent_at: Any = None, index: int | None = None
) -> int:
    """Event time, corrected for the sending device's clock as the Segment spec does:
    ``receivedAt - (sentAt - timestamp)``. Without ``sentAt`` the ``timestamp`` is
    taken as it is (server-side imports); without ``timestamp``, ``receivedAt``."""
    raw_ts = message.get("timestamp")
    if raw_ts is None:
        raw_ts = message.get("originalTimestamp")
    raw_sent = message.get("sentAt")
    if raw_sent is None:
        raw_sent = sent_at
    ts = _time(raw_ts, "timestamp", index)
    sent = _time(raw_sent, "sentAt", index)
    if ts is None:
        return received_at
    if sent is None:
        return ts
    return received_at - (sent - ts)


def channel_of(message: Mapping[str, Any], ctx: Mapping[str, Any], *, default: str) -> str:
    """Where it happened: the SDK that sent it, else the device, else the source's."""
    library = ctx.get("library")
    lib_name = library.get("name") if isinstance(library, Mapping) else None
    if isinstance(lib_name, str):
        lowered = lib_name.lower()
        for pattern, channel in LIBRARY_CHANNELS:
            if pattern in lowered:
                return channel or default
    rudder = message.get("channel")
    if isinstance(rudder, str) and rudder.lower() in RUDDERSTACK_CHANNELS:
        return RUDDERSTACK_CHANNELS[rudder.lower()] or default
    os_ = ctx.get("os")
    os_name = os_.get("name") if isinstance(os_, Mapping) else None
    device = ctx.get("device")
    device_type = device.get("type") if isinstance(device, Mapping) else None
    if isinstance(os_name, str) and os_name.lower() in MOBILE_OS:
        return "app"
    if isinstance(device_type, str) and device_type.lower() in MOBILE_DEVICES:
        return "app"
    return default


def context_of(ctx: Mapping[str, Any]) -> Context:
    device, os_, app = (_sub(ctx, key) for key in ("device", "os", "app"))
    device_type = _str(device.get("type"))
    if device_type is not None:
        device_type = _DEVICE_TYPES.get(device_type.lower(), device_type.lower())
    app_name = " ".join(s for s in (_str(app.get("name")), _str(app.get("version"))) if s)
    return Context(
        locale=_str(ctx.get("locale")),
        timezone=_str(ctx.get("timezone")),
        device_id=_str(device.get("id")),
        device_type=device_type,
        os=_str(os_.get("name")),
        app=app_name or None,
    )


def _scalars(obj: Mapping[str, Any], what: str, index: int | None) -> dict[str, Scalar]:
    try:
        return scalars(obj)
    except ValueError as exc:  # e.g. integers beyond 64 bits nested deep
        raise InvalidMessage(f"{what}: {exc}", index) from None


def _object(message: Mapping[str, Any], key: str, index: int | None) -> Mapping[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidMessage(f"{key} must be an object, got {_kind(value)}", index)
    return value


def _identifier(message: Mapping[str, Any], key: str, index: int | None) -> str | None:
    value = message.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidMessage(f"{key} must be a string, got {_kind(value)}", index)
    return str(value)


def _message_id(message: Mapping[str, Any], index: int | None) -> str:
    value = _identifier(message, "messageId", index)
    return value if value is not None else str(uuid.uuid4())


def _time(value: Any, key: str, index: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"{key} must be an ISO-8601 string, got {_kind(value)}", index)
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidMessage(f"{key} is not an ISO-8601 time: {value[:40]!r}", index) from None


def _sub(ctx: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = ctx.get(key)
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )
