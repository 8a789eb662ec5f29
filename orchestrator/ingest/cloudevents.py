"""CloudEvents 1.0 Kafka messages -> touchpoints. Pure: no I/O, no clock.

Channel services may publish CloudEvents on the ingest topic in either mode of the
Kafka protocol binding: *binary* (attributes in ``ce_*`` headers, the data as the
value, its media type in ``content-type``) or *structured* (the whole event as a JSON
document, ``content-type: application/cloudevents+json``).

=================  ================================================================
touchpoint         from the CloudEvent
=================  ================================================================
``event_id``       ``id`` (use globally unique ids, e.g. UUIDs: the worker
                   de-duplicates on it)
``name``           extension ``rotaname``, else the configured name for ``type``
                   (``ROTA_INGEST_CLOUDEVENTS_NAMES``), else ``type`` verbatim
``type``           extension ``rotatype`` (track, identify, ..., outcome), else track
``customer_id``    extension ``customerid``, else ``subject``
``anonymous_id``   extension ``anonymousid`` (one of the two ids is required)
``channel``        extension ``rotachannel``, else the configured default
``occurred_at``    ``time``, else when the bridge read it
``source``         ``source``
``action_id``      extension ``actionid`` (outcomes of a next-best-action)
``properties``     JSON ``data`` (an object: its fields; any other JSON value:
                   ``data``); ``text/*`` data: ``data`` as a string. For
                   ``rotatype: identify`` the object goes to ``traits`` instead.
=================  ================================================================

Anything else raises ``InvalidCloudEvent`` with a reason code; the bridge sends the
original record to the dead-letter topic with it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from orchestrator.ingest.scalars import scalar, scalars
from orchestrator.records import TOUCHPOINT_TYPES, Context, Scalar, Touchpoint, parse_time

SPECVERSION = "1.0"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch"

#: Reason codes of InvalidCloudEvent (the dead letter's ``reason``, a metric label).
REASONS = (
    "not_a_cloudevent",
    "unsupported_specversion",
    "missing_attribute",
    "invalid_attribute",
    "invalid_data",
    "unsupported_content_type",
    "no_customer",
)


#: Kafka record headers as confluent-kafka gives them (a list of pairs) or a mapping.
Headers = Iterable[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


class InvalidCloudEvent(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CloudEventMapping:
    """How CloudEvent types become touchpoint names, and the channel when unsaid."""

    names: Mapping[str, str] = field(default_factory=dict)
    default_channel: str = "crm"

    @classmethod
    def parse_names(cls, text: str) -> dict[str, str]:
        """``type=Name,type=Name`` (``ROTA_INGEST_CLOUDEVENTS_NAMES``)."""
        out: dict[str, str] = {}
        for number, entry in enumerate(text.split(","), start=1):
            if not entry.strip():
                continue
            ce_type, sep, name = entry.partition("=")
            if not sep or not ce_type.strip() or not name.strip():
                raise ValueError(
                    f"ROTA_INGEST_CLOUDEVENTS_NAMES entry {number} is not TYPE=NAME: {entry!r}"
                )
            out[ce_type.strip()] = name.strip()
        return out


def from_kafka(
    headers: Headers,
    value: bytes | None,
    *,
    mapping: CloudEventMapping,
    received_at: int,
) -> Touchpoint:
    """Either mode, told apart as the binding says: ``ce_specversion`` header = binary."""
    hdrs = _headers(headers)
    if "ce_specversion" in hdrs:
        return from_binary(hdrs, value, mapping=mapping, received_at=received_at)
    content_type = hdrs.get("content-type", "")
    if content_type.lower().startswith(BATCH):
        raise InvalidCloudEvent(
            "unsupported_content_type", "batched mode is not part of the Kafka binding"
        )
    return from_structured(
        value, mapping=mapping, received_at=received_at, content_type=content_type or None
    )


def from_binary(
    headers: Mapping[str, str],
    value: bytes | None,
    *,
    mapping: CloudEventMapping,
    received_at: int,
) -> Touchpoint:
    attrs: dict[str, Any] = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
    content_type = headers.get("content-type")
    if content_type:
        attrs["datacontenttype"] = content_type
    data = _data_from_bytes(value, attrs.get("datacontenttype")) if value else None
    return _touchpoint(attrs, data, mapping=mapping, received_at=received_at)


def from_structured(
    value: bytes | None,
    *,
    mapping: CloudEventMapping,
    received_at: int,
    content_type: str | None = None,
) -> Touchpoint:
    if not value:
        raise InvalidCloudEvent("not_a_cloudevent", "empty value and no ce_specversion header")
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidCloudEvent(
            "not_a_cloudevent", "no ce_ headers and the value is not a JSON CloudEvent"
        ) from None
    if not isinstance(envelope, dict) or "specversion" not in envelope:
        raise InvalidCloudEvent(
            "not_a_cloudevent", "no ce_ headers and the JSON value has no specversion"
        )
    attrs = {k: v for k, v in envelope.items() if k not in ("data", "data_base64")}
    if (
        "datacontenttype" not in attrs
        and content_type
        and not content_type.lower().startswith(STRUCTURED)
    ):
        attrs["datacontenttype"] = content_type  # some SDKs put it in the header
    data: Any = None
    if "data_base64" in envelope:
        raw = envelope["data_base64"]
        try:
            decoded = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
        except binascii.Error:
            decoded = None
        if decoded is None:
            raise InvalidCloudEvent("invalid_data", "data_base64 is not base64")
        data = _data_from_bytes(decoded, attrs.get("datacontenttype"))
    elif "data" in envelope:
        data = envelope["data"]
        ctype = attrs.get("datacontenttype")
        if isinstance(data, str) and isinstance(ctype, str) and _is_json(ctype):
            data = _parse_json(data.encode())  # JSON data carried as a string
    return _touchpoint(attrs, data, mapping=mapping, received_at=received_at)


def _touchpoint(
    attrs: Mapping[str, Any], data: Any, *, mapping: CloudEventMapping, received_at: int
) -> Touchpoint:
    version = attrs.get("specversion")
    if version != SPECVERSION:
        raise InvalidCloudEvent(
            "unsupported_specversion", f"specversion must be {SPECVERSION}, got {version!r}"
        )
    for required in ("id", "source", "type"):
        if not isinstance(attrs.get(required), str) or not attrs[required]:
            raise InvalidCloudEvent("missing_attribute", f"required attribute {required!r}")
    kind = _attr(attrs, "rotatype") or "track"
    if kind not in TOUCHPOINT_TYPES:
        raise InvalidCloudEvent(
            "invalid_attribute", f"rotatype must be one of {', '.join(TOUCHPOINT_TYPES)}"
        )
    customer_id = _attr(attrs, "customerid") or _attr(attrs, "subject")
    anonymous_id = _attr(attrs, "anonymousid")
    if not customer_id and not anonymous_id:
        raise InvalidCloudEvent(
            "no_customer", "no customerid, subject or anonymousid attribute names the customer"
        )
    raw_time = attrs.get("time")
    occurred_at = received_at
    if raw_time is not None:
        try:
            occurred_at = parse_time(str(raw_time))
        except ValueError:
            raise InvalidCloudEvent(
                "invalid_attribute", f"time is not RFC 3339: {str(raw_time)[:40]!r}"
            ) from None
    properties: dict[str, Scalar] = {}
    traits: dict[str, Scalar] = {}
    if isinstance(data, dict):
        try:
            values = scalars(data)
        except ValueError as exc:
            raise InvalidCloudEvent("invalid_data", str(exc)) from None
        if kind == "identify":
            traits = values
        else:
            properties = values
    elif data is not None:
        properties = {"data": scalar(data)}
    ce_type = attrs["type"]
    return Touchpoint(
        event_id=attrs["id"],
        type=kind,
        name=_attr(attrs, "rotaname") or mapping.names.get(ce_type, ce_type),
        channel=_attr(attrs, "rotachannel") or mapping.default_channel,
        occurred_at=occurred_at,
        customer_id=customer_id,
        anonymous_id=anonymous_id,
        received_at=received_at,
        properties=properties,
        traits=traits,
        context=_EMPTY_CONTEXT,
        source=attrs["source"],
        action_id=_attr(attrs, "actionid"),
    )


_EMPTY_CONTEXT = Context()


def _headers(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for key, raw in pairs:
        name = key.lower()
        if raw is None:
            continue
        try:
            out[name] = raw.decode() if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            raise InvalidCloudEvent("invalid_attribute", f"header {name} is not UTF-8") from None
    return out


def _data_from_bytes(value: bytes, content_type: Any) -> Any:
    ctype = content_type.lower() if isinstance(content_type, str) else ""
    if not ctype or _is_json(ctype):
        return _parse_json(value)
    if ctype.startswith("text/"):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise InvalidCloudEvent("invalid_data", f"{ctype} data is not UTF-8") from None
    raise InvalidCloudEvent(
        "unsupported_content_type", f"data of type {ctype!r}: send JSON (or text)"
    )


def _is_json(ctype: str) -> bool:
    base = ctype.split(";", 1)[0].strip().lower()
    return base in ("application/json", "text/json") or base.endswith("+json")


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidCloudEvent("invalid_data", f"data is not valid JSON: {exc}") from None


def _attr(attrs: Mapping[str, Any], name: str) -> str | None:
    value = attrs.get(name)
    if value is None or value == "":
        return None
    return str(value)
