"""Identity stitching: an anonymous visitor's state folded into the known customer's.

An identify (or alias) touchpoint carrying both ``customer_id`` and ``anonymous_id``
links the two. Their states live on different partitions, so the worker moves the
anonymous one over through Kafka (``orchestrator.worker.process`` has the protocol);
this module is the pure part: how two states become one.

The known customer's side wins where both have a value (traits, scores, stage, time
zone); counts and totals add up; first/last times take the earlier/later; live journey
instances are adopted for journeys the customer is not already in (where both are in
one, the customer's own instance carries on and the visitor's is dropped); event ids
are merged so that an event seen under either identity is never processed twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from msgspec.structs import replace

from orchestrator.core import ids
from orchestrator.core.decision import Timer
from orchestrator.core.profile import decayed
from orchestrator.core.state import RECENT_ACTIONS, CustomerState, History, Profile


def _latest(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        if v > out.get(k, -1):
            out[k] = v
    return out


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def merge_profiles(known: Profile, anon: Profile) -> Profile:
    counts = dict(anon.counts)
    for k, v in known.counts.items():
        counts[k] = counts.get(k, 0) + v
    return Profile(
        traits={**anon.traits, **known.traits},
        counts=counts,
        last_at=_latest(known.last_at, anon.last_at),
        last_seen=_latest(known.last_seen, anon.last_seen),
        first_seen_at=_min(known.first_seen_at, anon.first_seen_at),
        last_event_at=_max(known.last_event_at, anon.last_event_at),
        order_count=known.order_count + anon.order_count,
        total_spent=known.total_spent + anon.total_spent,
        nps=known.nps if known.nps is not None else anon.nps,
        csat=known.csat if known.csat is not None else anon.csat,
        effort=known.effort if known.effort is not None else anon.effort,
        stage=known.stage or anon.stage,
        timezone=known.timezone or anon.timezone,
        unsubscribed=tuple(sorted(set(known.unsubscribed) | set(anon.unsubscribed))),
        locale=known.locale or anon.locale,
        engagement=_engagement(known, anon),
        consent={
            c: max((v for v in (anon.consent.get(c), known.consent.get(c)) if v), key=_at)
            for c in {*known.consent, *anon.consent}
        },
    )


def _at(change: tuple[str, str, int]) -> int:
    return change[2]


def _engagement(known: Profile, anon: Profile) -> dict[str, tuple[float, int]]:
    out = dict(anon.engagement)
    for channel, (score, since) in known.engagement.items():
        if channel not in out:
            out[channel] = (score, since)
            continue
        other, other_since = out[channel]
        at = max(since, other_since)
        out[channel] = (decayed(score, since, at) + decayed(other, other_since, at), at)
    return out


def merge(
    known: CustomerState | None,
    anon: CustomerState,
    *,
    customer: str,
    now: int,
    max_seen: int,
) -> tuple[CustomerState, tuple[Timer, ...]]:
    """``known`` (the state of ``customer``, if any) with ``anon`` folded in, and the
    timers to set for what it adopted: its instances' timers, and its deferred actions,
    judged again at ``now``. The visitor's own timers stay behind on its partition and
    fire there as no-ops."""
    if known is None:
        known = CustomerState.empty(customer)
    mine = {i.journey_id for i in known.instances}
    adopted = tuple(i for i in anon.instances if i.journey_id not in mine)
    history = dict(known.history)
    for journey, h in anon.history.items():
        k = history.get(journey)
        history[journey] = (
            h
            if k is None
            else History(
                k.entries + h.entries,
                _max(k.last_entry_at, h.last_entry_at),
                _max(k.last_exit_at, h.last_exit_at),
            )
        )
    seen = dict(sorted({**anon.seen, **known.seen}.items(), key=lambda kv: (kv[1], kv[0])))
    while len(seen) > max_seen:
        del seen[next(iter(seen))]
    contacts = {
        scope: tuple(sorted({*known.contacts.get(scope, ()), *anon.contacts.get(scope, ())}))
        for scope in {*known.contacts, *anon.contacts}
    }
    held = {p.action.action_id for p in known.pending}
    moved = tuple(
        replace(p, action=replace(p.action, customer_id=customer))
        for p in anon.pending
        if p.action.action_id not in held
    )
    pending = known.pending + moved
    merged = CustomerState(
        customer_id=customer,
        profile=merge_profiles(known.profile, anon.profile),
        instances=known.instances + adopted,
        history=history,
        silence=known.silence,
        seen=seen,
        sent=tuple(sorted(known.sent + anon.sent, key=lambda a: (a.at, a.action_id)))[
            -RECENT_ACTIONS:
        ],
        pending=pending,
        contacts=contacts,
        identities=tuple(sorted({*known.identities, *anon.identities, anon.customer_id})),
    )
    timers = tuple(
        Timer(customer, i.timer_id, i.due_at)
        for i in adopted
        if i.timer_id is not None and i.due_at is not None
    )
    timers += tuple(Timer(customer, ids.defer_timer_id(p.action.action_id), now) for p in moved)
    return merged, timers
