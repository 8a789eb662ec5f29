"""Provider callback events to touchpoints: names, ids, and who they belong to.

Every touchpoint made here is tied to the customer and action the message was sent
for, by what the connectors attached when sending: SendGrid unique arguments
``rota_customer_id`` / ``rota_action_id`` (``ROTA_EMAIL_PROVIDER=sendgrid``), which
SendGrid copies into each event; the same two as query parameters of Twilio's
``StatusCallback`` URL. An event without a customer cannot be placed in a journey and
is counted as ``unattributed`` instead.

``event_id`` is derived from the provider's own event identity (``sg_event_id``;
``MessageSid`` + status), so a callback the provider retries becomes the same touchpoint
and the engine counts it once.

Consent and reachability: ``Unsubscribed`` (and ``Resubscribed``) with ``properties.
channel`` is what the profile folds into its unsubscribed channels; a hard bounce carries
``contact``, ``bounce: hard`` and the trait ``<contact>_bounced: true``, like the
connectors' ``Action Bounced``. Addresses and phone numbers are never copied into a
touchpoint: the profile has them already.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from connectors.privacy import redact_addresses
from connectors.unsubscribe import Unsubscribe
from orchestrator.records import Scalar, Touchpoint

#: Namespace of feedback event ids (uuid5); changing it would change every event id.
FEEDBACK_NAMESPACE = uuid.UUID("0c6f3e0e-58d4-4a0b-9d8e-2b6a41f7a3c9")

SENDGRID_NAMES: Mapping[str, str] = {
    "processed": "Email Processed",
    "deferred": "Email Deferred",
    "delivered": "Email Delivered",
    "open": "Email Opened",
    "click": "Email Link Clicked",
    "bounce": "Email Bounced",
    "dropped": "Email Dropped",
    "spamreport": "Email Marked Spam",
    "unsubscribe": "Unsubscribed",
    "group_unsubscribe": "Unsubscribed",
    "group_resubscribe": "Resubscribed",
}
TWILIO_NAMES: Mapping[str, str] = {
    "sent": "SMS Sent",
    "delivered": "SMS Delivered",
    "undelivered": "SMS Undelivered",
    "failed": "SMS Failed",
    "read": "SMS Read",
}
#: Twilio errors meaning the number does not reach a phone: unknown destination,
#: landline or unreachable carrier, invalid number.
TWILIO_HARD_BOUNCES = frozenset({30005, 30006, 21211, 21614})


@dataclass(frozen=True, slots=True)
class Mapped:
    """One provider event's fate: a touchpoint to publish, or why not (``skipped``:
    ``ignored`` = an event kind Rota does not track, ``unattributed`` = no customer)."""

    touchpoint: Touchpoint | None = None
    skipped: str = ""


def feedback_event_id(provider: str, identity: str) -> str:
    return str(uuid.uuid5(FEEDBACK_NAMESPACE, f"{provider}\x1f{identity}"))


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _link(url: str) -> str:
    """A clicked URL without query and fragment: those may carry personal tokens."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def sendgrid(event: Mapping[str, Any], *, received_at: int) -> Mapped:
    kind = _text(event.get("event")) or ""
    name = SENDGRID_NAMES.get(kind)
    if name is None:
        return Mapped(skipped="ignored")
    customer = _text(event.get("rota_customer_id"))
    if customer is None:
        return Mapped(skipped="unattributed")
    identity = (
        _text(event.get("sg_event_id"))
        or hashlib.sha256(orjson.dumps(dict(event), option=orjson.OPT_SORT_KEYS)).hexdigest()
    )
    timestamp = event.get("timestamp")
    occurred_at = (
        int(timestamp * 1000)
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
        else received_at
    )
    properties: dict[str, Scalar] = {"provider": "sendgrid", "provider_event": kind}
    traits: dict[str, Scalar] = {}
    for key in ("sg_message_id", "status", "asm_group_id", "bounce_classification"):
        value = event.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            properties[key] = value
    reason = _text(event.get("reason"))
    if reason:
        properties["reason"] = redact_addresses(reason)
    if kind == "click" and _text(event.get("url")):
        properties["url"] = _link(str(event["url"]))
    if kind == "open" and isinstance(event.get("sg_machine_open"), bool):
        properties["machine_open"] = event["sg_machine_open"]
    if kind in ("unsubscribe", "group_unsubscribe", "group_resubscribe"):
        properties["channel"] = "email"
    if kind == "bounce":
        hard = (_text(event.get("type")) or "bounce") == "bounce"
        properties.update(contact="email", bounce="hard" if hard else "soft")
        if hard:
            traits["email_bounced"] = True
    return Mapped(
        Touchpoint(
            event_id=feedback_event_id("sendgrid", identity),
            type="track",
            name=name,
            channel="email",
            occurred_at=occurred_at,
            customer_id=customer,
            received_at=received_at,
            properties=properties,
            traits=traits,
            source="feedback:sendgrid",
            action_id=_text(event.get("rota_action_id")),
        )
    )


def twilio(params: Mapping[str, str], *, received_at: int) -> Mapped:
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip()
    name = TWILIO_NAMES.get(status)
    if name is None:
        return Mapped(skipped="ignored")
    customer = _text(params.get("rota_customer_id"))
    sid = _text(params.get("MessageSid")) or _text(params.get("SmsSid"))
    if customer is None or sid is None:
        return Mapped(skipped="unattributed")
    properties: dict[str, Scalar] = {
        "provider": "twilio",
        "provider_event": status,
        "provider_message_id": sid,
    }
    traits: dict[str, Scalar] = {}
    code_text = _text(params.get("ErrorCode"))
    if code_text and code_text.isdigit():
        code = int(code_text)
        properties["twilio_error"] = code
        if code in TWILIO_HARD_BOUNCES:
            properties.update(contact="phone", bounce="hard")
            traits["phone_bounced"] = True
    return Mapped(
        Touchpoint(
            event_id=feedback_event_id("twilio", f"{sid}\x1f{status}"),
            type="track",
            name=name,
            channel="sms",
            occurred_at=received_at,  # Twilio's callback has no event time of its own
            customer_id=customer,
            received_at=received_at,
            properties=properties,
            traits=traits,
            source="feedback:twilio",
            action_id=_text(params.get("rota_action_id")),
        )
    )


def unsubscribed(request: Unsubscribe, *, received_at: int) -> Touchpoint:
    """The one-click unsubscribe of ``connectors.unsubscribe``; one per customer, channel
    and action however often the link is followed."""
    identity = f"{request.customer_id}\x1f{request.channel}\x1f{request.action_id}"
    return Touchpoint(
        event_id=feedback_event_id("unsubscribe", identity),
        type="track",
        name="Unsubscribed",
        channel=request.channel,
        occurred_at=received_at,
        customer_id=request.customer_id,
        received_at=received_at,
        properties={"channel": request.channel, "method": "list-unsubscribe"},
        source="feedback:unsubscribe",
        action_id=request.action_id,
    )
