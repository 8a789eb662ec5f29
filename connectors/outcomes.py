"""The touchpoints a connector reports back: how the loop closes.

Every action ends in one outcome event on the touchpoint topic. Its ``event_id`` is a
pure function of (action id, outcome name), so a redelivered action reports the same
event again and the engine, which de-duplicates touchpoints by ``event_id``, counts it
once.

A hard bounce (``Action Bounced``) also says what it means for the profile: properties
``contact`` (``email``, ``phone``, ``push_token``) and ``bounce: hard``, and the trait
``<contact>_bounced: true``, so the customer's profile records that this contact point
no longer reaches them (journeys/README.md, "Channels and reachability").
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum

from orchestrator.records import NextBestAction, Scalar, Touchpoint

#: Namespace of outcome event ids (uuid5); changing it would change every event id.
OUTCOME_NAMESPACE = uuid.UUID("5f0b7a52-3c1e-4d52-9a7e-6a1f2b8c0d41")


class Outcome(StrEnum):
    DELIVERED = "Action Delivered"
    FAILED = "Action Failed"
    REJECTED = "Action Rejected"
    EXPIRED = "Action Expired"
    BOUNCED = "Action Bounced"


def outcome_event_id(action_id: str, outcome: Outcome) -> str:
    return str(uuid.uuid5(OUTCOME_NAMESPACE, f"{action_id}\x1f{outcome.value}"))


def is_expired(action: NextBestAction, now_ms: int) -> bool:
    return action.expires_at is not None and action.expires_at < now_ms


def outcome_touchpoint(
    action: NextBestAction,
    outcome: Outcome,
    *,
    connector: str,
    occurred_at: int,
    detail: str = "",
    attempts: int = 0,
    provider_message_id: str | None = None,
    extra: Mapping[str, Scalar] | None = None,
) -> Touchpoint:
    """The ``outcome`` touchpoint reporting what happened to ``action``; ``extra`` are
    the connector's own properties (``DeliveryResult.properties``), added first so they
    cannot overwrite the runner's."""
    properties: dict[str, Scalar] = {
        **(extra or {}),
        "journey_id": action.journey_id,
        "journey_version": action.journey_version,
        "step": action.step,
        "instance_id": action.instance_id,
        "detail": detail,
        "attempts": attempts,
    }
    if action.template is not None:
        properties["template"] = action.template
    if provider_message_id is not None:
        properties["provider_message_id"] = provider_message_id
    traits: dict[str, Scalar] = {}
    contact = properties.get("contact")
    if outcome is Outcome.BOUNCED and isinstance(contact, str) and contact:
        traits[f"{contact}_bounced"] = True
    return Touchpoint(
        event_id=outcome_event_id(action.action_id, outcome),
        type="outcome",
        name=outcome.value,
        channel=action.channel,
        occurred_at=occurred_at,
        customer_id=action.customer_id,
        properties=properties,
        traits=traits,
        source=f"connector:{connector}",
        action_id=action.action_id,
    )
