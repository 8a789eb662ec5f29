"""Folding touchpoints into the customer profile: the one view of the customer.

Which events set which fields is a contract journeys rely on (journeys/README.md,
"The profile"); the names live here, in one table each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.core.state import Profile
from orchestrator.records import Scalar, Touchpoint

#: Orders: count, total spent and average order value; amount from ``total`` or ``revenue``.
ORDER_EVENTS = frozenset({"Order Completed"})
#: Feedback events -> profile field; the score is ``properties.score`` (or ``effort``).
SCORE_EVENTS: Mapping[str, str] = {
    "NPS Submitted": "nps",
    "CSAT Submitted": "csat",
    "CES Submitted": "effort",
    "Support Call Completed": "effort",
}
#: ``Survey Answered`` carries ``properties.survey`` (nps | csat | ces) and ``score``.
SURVEY_EVENT = "Survey Answered"
_SURVEY_FIELD = {"nps": "nps", "csat": "csat", "ces": "effort", "effort": "effort"}
#: Consent outcomes: the channel is ``properties.channel`` or the event's channel.
UNSUBSCRIBE_EVENTS = frozenset({"Unsubscribed"})
RESUBSCRIBE_EVENTS = frozenset({"Subscribed", "Resubscribed"})
#: Channel -> the trait holding the customer's address on it. A connector that finds
#: the address dead (hard bounce) sets the trait ``<contact>_bounced``; a new address
#: clears it.
CONTACT_TRAITS: Mapping[str, str] = {"email": "email", "sms": "phone", "push": "push_token"}
#: Touchpoint types the customer initiates: they count as engagement on their channel.
ENGAGEMENT_TYPES = frozenset({"track", "page", "screen"})
#: An engagement event's weight halves every 30 days.
ENGAGEMENT_HALF_LIFE = 30 * 86_400_000
#: The events that set more than counts and times (one lookup for the rest).
_FOLDED_EVENTS = frozenset(
    {*ORDER_EVENTS, *SCORE_EVENTS, SURVEY_EVENT, *UNSUBSCRIBE_EVENTS, *RESUBSCRIBE_EVENTS}
)
#: Traits copied into every action's payload, for templates to greet the customer.
PERSONALISATION_TRAITS = ("first_name", "last_name", "name")


def fold(profile: Profile, tp: Touchpoint) -> Profile:
    """``profile`` updated with what ``tp`` says about the customer."""
    at = tp.occurred_at
    name = tp.name
    p = profile
    # A changed map is copied and then set: ``{**m, k: v}`` builds and merges a second
    # map, ~80 ns dearer each (timeit), and this runs for every event.
    counts = dict(p.counts)
    counts[name] = counts.get(name, 0) + 1
    last_at = p.last_at
    if at > last_at.get(name, -1):
        last_at = dict(last_at)
        last_at[name] = at
    via = tp.channel
    last_seen = p.last_seen
    if at > last_seen.get(via, -1):
        last_seen = dict(last_seen)
        last_seen[via] = at
    first_seen = at if p.first_seen_at is None or at < p.first_seen_at else p.first_seen_at
    last_event = at if p.last_event_at is None or at > p.last_event_at else p.last_event_at
    traits = p.traits
    timezone = p.timezone
    if tp.traits:
        traits = _merge_traits(traits, tp.traits)
    trait_tz = traits.get("timezone")
    if isinstance(trait_tz, str) and trait_tz:
        timezone = trait_tz  # the customer's own setting beats the device's zone
    elif tp.context.timezone:
        timezone = tp.context.timezone
    order_count, total_spent = p.order_count, p.total_spent
    nps, csat, effort = p.nps, p.csat, p.effort
    unsubscribed = p.unsubscribed
    consent = p.consent
    props = tp.properties
    if name in _FOLDED_EVENTS:  # most events are none of these
        if name in ORDER_EVENTS:
            amount = _number(props.get("total", props.get("revenue")))
            order_count += 1
            total_spent += amount or 0.0
        elif name in SCORE_EVENTS or name == SURVEY_EVENT:
            score_field = SCORE_EVENTS.get(name)
            if name == SURVEY_EVENT:
                score_field = _SURVEY_FIELD.get(str(props.get("survey", "")).lower())
            score = _number(props.get("score", props.get("effort")))
            if score_field is not None and score is not None:
                if score_field == "nps":
                    nps = score
                elif score_field == "csat":
                    csat = score
                else:
                    effort = score
        else:  # a consent event
            channel = str(props.get("channel") or via)
            subs = set(unsubscribed)
            if name in UNSUBSCRIBE_EVENTS:
                subs.add(channel)
            else:
                subs.discard(channel)
            unsubscribed = tuple(sorted(subs))
            status = "unsubscribed" if name in UNSUBSCRIBE_EVENTS else "subscribed"
            consent = dict(consent)
            consent[channel] = (status, tp.source or via, at)
    if tp.traits:
        for trait, value in tp.traits.items():
            if trait.endswith("_consent") and isinstance(value, bool):
                status = "subscribed" if value else "unsubscribed"
                channel = trait.removesuffix("_consent")
                consent = dict(consent)
                consent[channel] = (status, tp.source or "traits", at)
    engagement = p.engagement
    if tp.type in ENGAGEMENT_TYPES:
        score, since = engagement.get(via, (0.0, at))
        if at > since:  # ``decayed`` inlined: most events are engagement
            score, since = score * 0.5 ** ((at - since) / ENGAGEMENT_HALF_LIFE), at
        engagement = dict(engagement)
        engagement[via] = (score + 1.0, since)
    locale = tp.context.locale or p.locale
    trait_locale = traits.get("locale")
    if isinstance(trait_locale, str) and trait_locale:
        locale = trait_locale
    return Profile(
        traits, counts, last_at, last_seen, first_seen, last_event, order_count, total_spent,
        nps, csat, effort, p.stage, timezone, unsubscribed, locale, engagement, consent,
    )  # fmt: skip


def decayed(score: float, since: int, now: int) -> float:
    """``score`` as of ``since``, seen at ``now`` (never grows back for earlier times)."""
    if now <= since:
        return score
    return score * 0.5 ** ((now - since) / ENGAGEMENT_HALF_LIFE)


def engagement_on(profile: Profile, channel: str, now: int) -> float:
    """How engaged the customer is on ``channel`` at ``now``."""
    score, since = profile.engagement.get(channel, (0.0, now))
    return decayed(score, since, now)


def reachable(profile: Profile, channel: str) -> bool:
    """Whether ``channel`` can reach the customer (journeys/README.md, Channels)."""
    traits = profile.traits
    if channel in profile.unsubscribed or traits.get(f"{channel}_consent") is False:
        return False
    contact = CONTACT_TRAITS.get(channel)
    if contact and traits.get(f"{contact}_bounced") is True:
        return False
    if channel == "push":
        return traits.get("push_consent") is True or bool(traits.get("push_token"))
    if contact:
        return bool(traits.get(contact))
    if channel == "in_app":
        return "app" in profile.last_seen
    return True


def _merge_traits(traits: Mapping[str, Scalar], new: Mapping[str, Scalar]) -> dict[str, Scalar]:
    merged = {**traits, **new}
    for contact in CONTACT_TRAITS.values():
        changed = contact in new and new[contact] != traits.get(contact)
        if changed and f"{contact}_bounced" not in new:
            merged.pop(f"{contact}_bounced", None)
    return merged


def _number(value: Scalar) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


def as_cel(profile: Profile, now: int) -> dict[str, Any]:
    """The ``profile`` variable of conditions at ``now``. Unset scores are absent (use
    ``has()``)."""
    out: dict[str, Any] = {
        "engagement": {c: engagement_on(profile, c, now) for c in profile.engagement},
        "consent": {c: v[0] for c, v in profile.consent.items()},
        "traits": profile.traits,
        "counts": profile.counts,
        "last_at": profile.last_at,
        "last_seen": profile.last_seen,
        "order_count": profile.order_count,
        "total_spent": profile.total_spent,
        "average_order_value": profile.average_order_value,
        "unsubscribed": list(profile.unsubscribed),
    }
    for key in (
        "first_seen_at", "last_event_at", "nps", "csat", "effort", "stage", "timezone", "locale",
    ):  # fmt: skip
        value = getattr(profile, key)
        if value is not None:
            out[key] = value
    if profile.last_event_at is not None:
        out["days_inactive"] = max(0, now - profile.last_event_at) // 86_400_000
    return out
