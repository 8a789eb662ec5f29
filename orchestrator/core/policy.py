"""The contact policy: what actually goes out when journeys want to act.

Journeys decide what they would like to send; the policy, applied across all of a
customer's journeys, decides whether it goes out now, later or not at all:

- an action past its ``expires_at`` is dropped;
- a marketing action needs a reachable channel (consent, not unsubscribed, a contact
  point that did not bounce); a transactional one only a working contact point;
- marketing actions wait out the customer's local quiet hours (deferred, not dropped);
- frequency caps (all channels together, or one channel) are never exceeded: a capped
  action is deferred until the cap frees up, or dropped if its step says so;
- when one event makes several journeys act, the highest priority is judged first, so
  it is the one that gets the last free slot of a cap.

Pure: the verdict depends on the action, the profile, the customer's contact ledger
(send times per cap scope) and the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from msgspec import Struct

from orchestrator.core.localtime import next_local_time, zone
from orchestrator.core.profile import CONTACT_TRAITS, reachable
from orchestrator.core.state import Profile
from orchestrator.records import NextBestAction

MARKETING = "marketing"
TRANSACTIONAL = "transactional"
ALL_CHANNELS = "*"

#: Why an action was held back: the ``reason`` label of the suppressed/deferred metrics.
Reason = Literal[
    "expired", "unsubscribed", "no_consent", "unreachable", "quiet_hours", "frequency_cap"
]


class Cap(Struct, frozen=True, gc=False):
    """At most ``max`` marketing actions per ``per`` ms, on ``channel`` or on all."""

    max: int
    per: int
    channel: str = ALL_CHANNELS

    def applies_to(self, channel: str) -> bool:
        return self.channel in (ALL_CHANNELS, channel)

    def describe(self) -> str:
        from orchestrator.journey.duration import format_duration

        where = "all channels" if self.channel == ALL_CHANNELS else self.channel
        return f"{self.max} per {format_duration(self.per)} on {where}"


class QuietHours(Struct, frozen=True, gc=False):
    """Local times (minutes after midnight) from ``start`` to ``end``; wraps midnight
    when ``start > end`` (21:00-08:00)."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


class Policy(Struct, frozen=True, gc=False):
    caps: tuple[Cap, ...] = ()
    quiet_hours: QuietHours | None = None

    def scopes(self) -> dict[str, int]:
        """Ledger scopes and how many send times each must keep (its largest cap)."""
        keep: dict[str, int] = {}
        for cap in self.caps:
            keep[cap.channel] = max(keep.get(cap.channel, 0), cap.max)
        return keep


class Verdict(Struct, frozen=True, gc=False):
    kind: Literal["send", "defer", "drop"]
    reason: Reason | None = None
    until: int | None = None  # defer: when to judge again
    detail: str = ""


SEND = Verdict("send")

#: Send times per cap scope (``*`` or a channel), oldest first.
Ledger = Mapping[str, tuple[int, ...]]


def judge(
    policy: Policy,
    action: NextBestAction,
    category: str,
    if_capped: str,
    profile: Profile,
    ledger: Ledger,
    now: int,
) -> Verdict:
    """Whether ``action`` goes out at ``now``."""
    expires = action.expires_at
    if expires is not None and now >= expires:
        return Verdict("drop", "expired", detail="past its expiry")
    channel = action.channel
    if category == TRANSACTIONAL:
        contact = CONTACT_TRAITS.get(channel)
        traits = profile.traits
        if contact and (not traits.get(contact) or traits.get(f"{contact}_bounced") is True):
            return Verdict("drop", "unreachable", detail=f"no working {contact}")
        return SEND
    if not reachable(profile, channel):
        if channel in profile.unsubscribed:
            return Verdict("drop", "unsubscribed", detail=f"unsubscribed from {channel}")
        if profile.traits.get(f"{channel}_consent") is False:
            return Verdict("drop", "no_consent", detail=f"no consent for {channel}")
        return Verdict("drop", "unreachable", detail=f"no way to reach them on {channel}")
    quiet = policy.quiet_hours
    if quiet is not None:
        local = datetime.fromtimestamp(now / 1000, tz=UTC).astimezone(zone(profile.timezone))
        if quiet.contains(local.hour * 60 + local.minute):
            until = next_local_time(now, quiet.end, profile.timezone)
            return _later(until, expires, "quiet_hours", "quiet hours")
    for cap in policy.caps:
        if not cap.applies_to(channel):
            continue
        recent = [t for t in ledger.get(cap.channel, ()) if t > now - cap.per]
        if len(recent) >= cap.max:
            if if_capped == "drop":
                return Verdict("drop", "frequency_cap", detail=f"cap {cap.describe()}")
            free_at = sorted(recent)[len(recent) - cap.max] + cap.per
            return _later(free_at, expires, "frequency_cap", f"cap {cap.describe()}")
    return SEND


def _later(until: int, expires: int | None, reason: Reason, why: str) -> Verdict:
    if expires is not None and until >= expires:
        return Verdict("drop", reason, detail=f"{why} last past its expiry")
    return Verdict("defer", reason, until, detail=why)


def record_send(
    policy: Policy, ledger: Ledger, channel: str, now: int
) -> dict[str, tuple[int, ...]]:
    """``ledger`` after a marketing action went out on ``channel`` at ``now``: each
    scope keeps only as many times as its largest cap needs, within its longest window."""
    out = dict(ledger)
    longest = max((c.per for c in policy.caps), default=0)
    for scope, keep in policy.scopes().items():
        if scope not in (ALL_CHANNELS, channel):
            continue
        times = [t for t in (*out.get(scope, ()), now) if t > now - longest]
        out[scope] = tuple(times[-keep:])
    return out
