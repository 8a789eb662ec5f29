"""The decision core: (customer state, event or timer, catalog) -> Decision.

Pure and deterministic: no I/O, no clock, no randomness. ``now`` is the event's
``occurred_at`` or the timer's ``now``; the same inputs in the same order give the same
``Decision`` byte for byte, whoever calls it (the Faust worker, ``rota simulate``, a
test). Local mutation of working copies happens inside one call only; the state given
in is never changed.

Order of work for a touchpoint (journeys/README.md documents it for journey authors):

1. de-duplicate by ``event_id`` (a duplicate returns the same state object, nothing else);
2. fold the event into the profile (conditions then see the updated profile);
3. each live instance, in entry order: migrate if its version asks, then goal, exits,
   and a matching ``wait_for``;
4. reset inactivity (silence) timers the event matches;
5. enter the journeys the event triggers, highest priority first.

A timer either resumes the instance waiting on it, enters a silence journey, or - when
stale (the instance moved on, the timer was replaced) - does nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from orchestrator.core import bandit, ids
from orchestrator.core.decision import FunnelEvent, Timer, TimerFired
from orchestrator.core.event_variable import event_variable
from orchestrator.core.localtime import next_local_time, trait_time
from orchestrator.core.policy import MARKETING, judge, record_send
from orchestrator.core.profile import (
    CONTACT_TRAITS,
    ENGAGEMENT_TYPES,
    PERSONALISATION_TRAITS,
    as_cel,
    engagement_on,
    fold,
    reachable,
)
from orchestrator.core.state import (
    RECENT_ACTIONS,
    CustomerState,
    History,
    Instance,
    Pending,
    Profile,
    SentAction,
)
from orchestrator.journey.catalog import Catalog, DedupWindow
from orchestrator.journey.conditions import Condition
from orchestrator.journey.duration import format_duration
from orchestrator.journey.plan import (
    ActionStep,
    BranchStep,
    EndStep,
    JourneyPlan,
    SplitStep,
    UpdateStep,
    WaitForStep,
    WaitStep,
)
from orchestrator.records import NextBestAction, Scalar, Touchpoint, iso

#: A journey that passes this many steps without waiting in one decision is stopped.
#: Validation rejects loops without a wait, so this only guards against bugs.
MAX_STEPS = 100
_HOUR = 3_600_000
#: Per channel, the traits an action's payload carries (``_Run._payload``).
_TRAITS_SENT: Mapping[str, tuple[str, ...]] = {
    channel: (*PERSONALISATION_TRAITS, contact) for channel, contact in CONTACT_TRAITS.items()
}


class Decision(Struct, gc=False):
    """What to persist, emit, schedule and count after one event. See
    ``orchestrator.core.decision`` for the parts."""

    state: CustomerState
    actions: tuple[NextBestAction, ...] = ()
    timers_set: tuple[Timer, ...] = ()
    timers_cancelled: tuple[str, ...] = ()
    funnel: tuple[FunnelEvent, ...] = ()
    trace: tuple[str, ...] = ()
    #: Actions the contact policy held back, with the reason (``policy.Reason``).
    suppressed: tuple[tuple[NextBestAction, str], ...] = ()
    deferred: tuple[tuple[NextBestAction, str], ...] = ()
    #: Bandit arms pulled (an action with a bandit-chosen offer emitted) and won.
    bandit_pulls: tuple[str, ...] = ()
    bandit_wins: tuple[str, ...] = ()


def decide(
    state: CustomerState | None,
    event: Touchpoint | TimerFired,
    catalog: Catalog,
    *,
    customer_id: str,
    trace: bool = False,
    bandits: bandit.Stats | None = None,
) -> Decision:
    """Advance one customer by one event or timer. ``customer_id`` is the state key
    (``Touchpoint.subject`` or ``TimerFired.customer_id``); ``bandits`` the offer
    statistics shared with the customer's partition (``core.bandit``)."""
    if state is None:
        state = CustomerState.empty(customer_id)
    if isinstance(event, TimerFired):
        return _Run(state, event, event.now, catalog, trace, bandits).on_timer(event)
    if event.event_id in state.seen:
        why = (f"{event.event_id}: duplicate event id, ignored",) if trace else ()
        return Decision(state, trace=why)
    if _unheard(state, event, catalog):
        # The common case: no journey can react. Only the profile and the window change.
        seen = dict(state.seen)
        remember(seen, event.event_id, event.occurred_at, catalog.dedup)
        profile = fold(state.profile, event)
        new = replace(state, profile=profile, seen=seen)
        return Decision(new, trace=(f"{event.event_id}: no journey listens",) if trace else ())
    return _Run(state, event, event.occurred_at, catalog, trace, bandits).on_touchpoint(event)


def _unheard(state: CustomerState, tp: Touchpoint, catalog: Catalog) -> bool:
    """Whether no journey can react to ``tp``: none starts on it or waits for silence
    around it, it rewards no bandit's offer, and every live instance runs the current
    version of its journey (nothing to migrate) which does not listen for it."""
    name = tp.name
    if (
        name in catalog.by_trigger
        or name in catalog.silence_by_event
        or catalog.silence_any
        or (tp.action_id and state.sent)
    ):
        return False
    if state.instances:
        current = catalog.current
        for inst in state.instances:
            plan = current.get(inst.journey_id)
            if plan is None or plan.version != inst.version or plan.reacts_to(name):
                return False
    return True


def remember(seen: dict[str, int], event_id: str, now: int, window: DedupWindow) -> None:
    """Add ``event_id`` to ``seen`` (oldest first) and forget what falls out of the window."""
    seen[event_id] = now
    while len(seen) > window.max_ids:
        del seen[next(iter(seen))]
    horizon = now - window.max_age_ms
    while seen:
        oldest = next(iter(seen))
        if seen[oldest] >= horizon:
            break
        del seen[oldest]


class _Run:
    """The working copy of one decision. Lives for one ``decide`` call."""

    def __init__(
        self,
        state: CustomerState,
        event: Touchpoint | TimerFired,
        now: int,
        catalog: Catalog,
        trace: bool,
        bandits: bandit.Stats | None = None,
    ):
        self.state = state
        self.bandits: bandit.Stats = bandits or {}
        self.sent: list[SentAction] = list(state.sent)
        self.arms: dict[str, str] = {}  # action id -> bandit arm of its offer
        self.wins: list[str] = []
        self.customer = state.customer_id
        self.event = event
        self.now = now
        self.catalog = catalog
        self.profile: Profile = state.profile
        self.instances: list[Instance] = list(state.instances)
        #: Instances that ended in this decision (an event ends some before others see it).
        self.dropped: set[str] = set()
        self.history: dict[str, History] | None = None  # copied on first write
        self.silence: dict[str, int] | None = None
        self.actions: list[NextBestAction] = []
        self.categories: dict[str, tuple[str, str]] = {}  # action id -> category, if_capped
        self.pending: list[Pending] = list(state.pending)
        self.timers: list[Timer] = []
        self.cancelled: list[str] = []
        self.funnel: list[FunnelEvent] = []
        self.trace: list[str] | None = [] if trace else None
        self._event_cel: Mapping[str, Any] | None = None
        self._profile_cel: dict[str, Any] | None = None
        self.trigger_id = event.event_id if isinstance(event, Touchpoint) else None

    # -- entry points --------------------------------------------------------------

    def on_touchpoint(self, tp: Touchpoint) -> Decision:
        self.profile = fold(self.state.profile, tp)
        if tp.action_id and tp.type in ENGAGEMENT_TYPES:
            self._reward(lambda a: a.action_id == tp.action_id)
        seen = dict(self.state.seen)
        remember(seen, tp.event_id, self.now, self.catalog.dedup)
        name = tp.name
        ended: set[str] = set()
        if self.instances:
            current = self.catalog.current
            for inst in list(self.instances):
                if inst.instance_id in self.dropped:
                    continue
                plan = current.get(inst.journey_id)
                if plan is not None and plan.version == inst.version and not plan.reacts_to(name):
                    continue  # the common case, decided without resolving: nothing to migrate
                self._instance_event(inst, name, ended)
        for plan in self.catalog.silence_by_event.get(name, ()):
            self._reset_silence(plan)
        for plan in self.catalog.silence_any:
            self._reset_silence(plan)
        for plan in self.catalog.by_trigger.get(name, ()):
            if plan.id not in ended:
                self._try_enter(plan, f"event {name!r}")
        return self._decision(seen)

    def on_timer(self, fired: TimerFired) -> Decision:
        tid = fired.timer_id
        if tid.startswith(ids.DEFER_PREFIX):
            action_id = tid[len(ids.DEFER_PREFIX) :]
            held = next((p for p in self.pending if p.action.action_id == action_id), None)
            if held is None:
                return self._stale(tid)
            self.pending.remove(held)
            self.actions.append(held.action)
            self._rearm(held.action)
            self.categories[action_id] = (held.category, held.if_capped)
            return self._decision(None)
        if tid.startswith(ids.SILENCE_PREFIX):
            journey = tid[len(ids.SILENCE_PREFIX) :]
            if self.state.silence.get(journey) != fired.due_at:
                return self._stale(tid)
            silence = self._silence()
            del silence[journey]
            plan = self.catalog.current.get(journey)
            if plan is None or plan.entry.silence_for is None:
                return self._decision(None)
            self._try_enter(plan, f"{format_duration(plan.entry.silence_for)} of silence")
            return self._decision(None)
        for inst in self.instances:
            if inst.timer_id == tid and inst.due_at == fired.due_at:
                break
        else:
            return self._stale(tid)
        resolved = self._resolve(inst)
        if resolved is None:
            return self._decision(None)
        plan, inst = resolved
        if inst.timer_id != tid:
            return self._decision(None)  # migrated onto a new step, which set its own timer
        step = plan.steps[inst.step]
        inst = inst.untimed()
        self._put(inst)
        if isinstance(step, WaitForStep):
            self._note(inst, f"no {step.event!r} within the timeout: -> {step.on_timeout}")
            self._advance(plan, inst, step.on_timeout)
        elif isinstance(step, WaitStep):
            self._note(inst, f"wait over: -> {step.next}")
            self._advance(plan, inst, step.next)
        return self._decision(None)

    # -- live instances ------------------------------------------------------------

    def _instance_event(self, inst: Instance, name: str, ended: set[str]) -> None:
        resolved = self._resolve(inst)
        if resolved is None:
            return  # retired with its version, not by this event: it may enter again
        plan, inst = resolved
        if not plan.reacts_to(name):
            return
        goal = plan.goal
        if goal is not None and goal.event == name:
            in_window = goal.within is None or self.now - inst.entered_at <= goal.within
            if in_window and self._check(goal.condition, plan, inst, "goal"):
                self._end(plan, inst, "converted", f"goal {name!r} reached")
                ended.add(plan.id)
                return
        for rule in plan.exits:
            if rule.event is not None and rule.event != name:
                continue
            if self._check(rule.condition, plan, inst, "exit"):
                what = f"exit on {name!r}" if rule.event else "exit condition holds"
                self._end(plan, inst, "exited", what)
                ended.add(plan.id)
                return
        step = plan.steps[inst.step]
        if (
            isinstance(step, WaitForStep)
            and step.event == name
            and self._check(step.condition, plan, inst, f"wait_for {step.name}")
        ):
            if inst.timer_id:
                self.cancelled.append(inst.timer_id)
            inst = inst.untimed()
            self._note(inst, f"{name!r} arrived: -> {step.on_event}")
            self._advance(plan, inst, step.on_event)

    def _resolve(self, inst: Instance) -> tuple[JourneyPlan, Instance] | None:
        """The plan ``inst`` runs under, migrating it first when the current version of
        its journey declares a migration for its step; None when it had to end."""
        current = self.catalog.current.get(inst.journey_id)
        if current is not None and current.version != inst.version:
            migration = current.migrations.get(inst.version)
            if migration is not None and inst.step in migration.steps:
                moved = self._migrate(current, inst, migration.steps[inst.step])
                return None if moved is None else (current, moved)
        plan = self.catalog.plan(inst.journey_id, inst.version)
        if plan is None:
            # Its version is no longer loaded and no migration covers it: the instance
            # cannot go on. It ends as exited, never silently.
            self._drop(inst, "exited", f"version {inst.version} is no longer loaded")
            return None
        return plan, inst

    def _migrate(self, plan: JourneyPlan, inst: Instance, step: str) -> Instance | None:
        old = self.catalog.plan(inst.journey_id, inst.version)
        old_step = old.steps.get(inst.step) if old else None
        new_step = plan.steps[step]
        self._note(inst, f"migrated to version {plan.version} at step {step!r}")
        if old_step is not None and type(old_step) is type(new_step):
            # Same kind of step: keep waiting on the same timer, under the new rules.
            moved = replace(inst, version=plan.version, step=step)
            self._put(moved, replacing=inst)
            return moved
        if inst.timer_id:
            self.cancelled.append(inst.timer_id)
        moved = replace(inst, version=plan.version, timer_id=None, due_at=None)
        self._put(moved, replacing=inst)
        return self._advance(plan, moved, step)

    # -- entering ------------------------------------------------------------------

    def _try_enter(self, plan: JourneyPlan, why: str) -> None:
        entry = plan.entry
        live = sum(1 for i in self.instances if i.journey_id == plan.id)
        if live >= entry.max_live:
            self._note_plan(plan, f"not entered on {why}: already live ({live})")
            return
        hist = self._history_of(plan.id)
        if hist.entries:
            if entry.reentry == "never":
                self._note_plan(plan, f"not entered on {why}: re-entry is never")
                return
            if entry.reentry == "cooldown":
                since = hist.last_exit_at if live == 0 and hist.last_exit_at else hist.last_entry_at
                if since is not None and self.now - since < entry.cooldown:
                    self._note_plan(plan, f"not entered on {why}: in cooldown")
                    return
        if not self._check(entry.condition, plan, None, "entry condition"):
            return
        if not self._check(entry.segment, plan, None, "segment"):
            return
        seq = hist.entries + 1
        self._set_history(plan.id, History(seq, self.now, hist.last_exit_at))
        inst = Instance(
            journey_id=plan.id,
            version=plan.version,
            instance_id=ids.instance_id(plan.id, seq),
            step=plan.start,
            entered_at=self.now,
            step_at=self.now,
        )
        self.instances.append(inst)
        self.funnel.append(
            FunnelEvent(plan.id, plan.version, "entered", instance_id=inst.instance_id)
        )
        self._note(inst, f"entered on {why}")
        self._advance(plan, inst, plan.start)

    def _reset_silence(self, plan: JourneyPlan) -> None:
        period = plan.entry.silence_for or 0
        grain = max(1, min(_HOUR, period // 24))
        due = -(-(self.now + period) // grain) * grain
        if due > self.state.silence.get(plan.id, -1):
            self._silence()[plan.id] = due
            self.timers.append(Timer(self.customer, ids.silence_timer_id(plan.id), due))

    # -- running steps -------------------------------------------------------------

    def _advance(self, plan: JourneyPlan, inst: Instance, name: str) -> Instance | None:
        """Run from step ``name`` until the instance waits (returned) or ends (None)."""
        for _ in range(MAX_STEPS):
            visits = dict(inst.visits)
            visits[name] = visit = visits.get(name, 0) + 1
            step = plan.steps[name]
            acted = inst.last_action_id
            if isinstance(step, ActionStep):  # before the move: its action id is part of it
                acted = self._act(plan, inst, step, visit) or acted
            inst = inst.at_step(name, self.now, visits, acted)
            self._put(inst)
            if not isinstance(step, SplitStep):  # a split counts its step once assigned
                self.funnel.append(
                    FunnelEvent(plan.id, plan.version, "step", name, inst.variant, inst.instance_id)
                )
            if isinstance(step, ActionStep):
                name = step.next
            elif isinstance(step, WaitStep):
                due = self._wait_until(inst, step)
                if due is None or due <= self.now:
                    name = step.next
                    continue
                return self._wait(inst, due, "waiting")
            elif isinstance(step, WaitForStep):
                return self._wait(inst, self.now + step.timeout, f"waiting for {step.event!r}")
            elif isinstance(step, BranchStep):
                name = step.default
                for cond, nxt in step.cases:
                    if self._check(cond, plan, inst, f"branch {step.name}"):
                        name = nxt
                        break
                self._note(inst, f"branch {step.name}: -> {name}")
            elif isinstance(step, SplitStep):
                point = ids.bucket(self.customer, plan.id, step.name)
                chosen = next((v for v in step.variants if point < v.upper), step.variants[-1])
                inst = replace(inst, variant=chosen.name)
                self._put(inst)
                self.funnel.append(
                    FunnelEvent(plan.id, plan.version, "step", name, chosen.name, inst.instance_id)
                )
                self._note(inst, f"split {step.name}: variant {chosen.name} (bucket {point:.2f})")
                name = chosen.next
            elif isinstance(step, UpdateStep):
                changes: dict[str, Any] = {}
                if step.traits:
                    changes["traits"] = {**self.profile.traits, **step.traits}
                if step.stage:
                    changes["stage"] = step.stage
                self.profile = replace(self.profile, **changes)
                self._profile_cel = None
                self._note(inst, f"profile updated: {changes}")
                name = step.next
            else:
                assert isinstance(step, EndStep)
                self._end(plan, inst, "completed", f"end at {step.name}")
                return None
        self._end(plan, inst, "exited", f"stopped after {MAX_STEPS} steps without a wait")
        return None

    def _wait(self, inst: Instance, due: int, why: str) -> Instance:
        timer_id = ids.step_timer_id(inst.instance_id, inst.moves)
        inst = inst.waiting(timer_id, due)
        self._put(inst)
        self.timers.append(Timer(self.customer, timer_id, due))
        if self.trace is not None:  # formatting the time costs more than the rest of this
            self._note(inst, f"{why} (timer {timer_id} due {iso(due)})")
        return inst

    def _wait_until(self, inst: Instance, step: WaitStep) -> int | None:
        if step.duration is not None:
            return self.now + step.duration
        tz = self.profile.timezone
        if step.until_time is not None:
            return next_local_time(self.now, step.until_time, tz)
        at = trait_time(self.profile.traits.get(step.until_trait or ""), tz)
        if at is None:
            self._note(inst, f"trait {step.until_trait!r} holds no date: not waiting")
            return None
        return at + step.offset

    def _act(self, plan: JourneyPlan, inst: Instance, step: ActionStep, visit: int) -> str | None:
        """Send the step's action (to the contact policy); its id, or None if no channel
        could reach the customer."""
        channel = step.channels[0]
        how = ""
        if step.best_of:
            candidates = [c for c in step.channels if reachable(self.profile, c)]
            if step.choose == "engaged" and candidates:
                scores = {c: engagement_on(self.profile, c, self.now) for c in candidates}
                candidates.sort(key=lambda c: -scores[c])  # stable: ties keep list order
            found = candidates[0] if candidates else None
            how = "most engaged reachable" if step.choose == "engaged" else "first reachable"
            if found is None:
                self._note(inst, f"{step.name}: no reachable channel among {step.channels}")
                return None
            channel = found
        action_id = ids.action_id(
            self.customer, plan.id, plan.version, inst.instance_id, step.name, visit
        )
        offer, offer_note = step.offer, ""
        if step.offers:
            offer, offer_note = self._choose_offer(plan, step, action_id)
        payload = self._payload(step.params, channel)
        if inst.variant is not None:
            payload["variant"] = inst.variant
        self.actions.append(
            NextBestAction(
                action_id=action_id,
                customer_id=self.customer,
                journey_id=plan.id,
                journey_version=plan.version,
                instance_id=inst.instance_id,
                step=step.name,
                channel=channel,
                created_at=self.now,
                template=step.template,
                offer=offer,
                payload=payload,
                priority=step.priority,
                expires_at=self.now + step.expires_in if step.expires_in else None,
                reason=f"{plan.key} {step.name}"
                + (f" ({inst.variant})" if inst.variant else "")
                + (f"; {channel}: {how} of {', '.join(step.channels)}" if how else "")
                + offer_note,
                trigger_event_id=self.trigger_id,
            )
        )
        self.categories[action_id] = (step.category, step.if_capped)
        self._note(inst, f"{step.name}: send {step.template or step.offer or ''} on {channel}")
        return action_id

    def _choose_offer(self, plan: JourneyPlan, step: ActionStep, action_id: str) -> tuple[str, str]:
        arms = {o: self._arm(plan, step, o) for o in step.offers}
        offer = bandit.choose(step.offers, arms, self.bandits, seed=action_id)
        self.arms[action_id] = arms[offer]
        pulls, wins = self.bandits.get(arms[offer], (0, 0))
        return offer, f"; offer {offer} by bandit ({wins}/{pulls} won so far)"

    def _rearm(self, action: NextBestAction) -> None:
        """A deferred action going out now counts as a pull of its offer's arm."""
        plan = self.catalog.plan(action.journey_id, action.journey_version)
        step = plan.steps.get(action.step) if plan else None
        if plan is None or not isinstance(step, ActionStep) or not step.offers:
            return
        self.arms[action.action_id] = self._arm(plan, step, action.offer or "")

    def _arm(self, plan: JourneyPlan, step: ActionStep, offer: str) -> str:
        segment = str(self.profile.traits.get(step.segment_by, "")) if step.segment_by else ""
        return bandit.arm(plan.id, step.name, segment, offer)

    def _reward(self, matches: Callable[[SentAction], bool]) -> None:
        """Credit the newest unrewarded bandit action that ``matches`` (once each)."""
        for n in range(len(self.sent) - 1, -1, -1):
            a = self.sent[n]
            if a.arm and not a.won and matches(a):
                self.sent[n] = replace(a, won=True)
                self.wins.append(a.arm)
                return

    def _payload(self, params: Mapping[str, Scalar], channel: str) -> dict[str, Scalar]:
        """The step's parameters and what the connector needs to address and greet the
        customer: the channel's contact point and the personalisation traits, copied
        from the profile at decision time so a connector never looks a customer up."""
        payload = dict(params)
        traits = self.profile.traits
        if traits:
            for name in _TRAITS_SENT.get(channel, PERSONALISATION_TRAITS):
                value = traits.get(name)
                if value is not None:
                    payload[name] = value
        return payload

    # -- ending --------------------------------------------------------------------

    def _end(self, plan: JourneyPlan, inst: Instance, kind: str, why: str) -> None:
        if kind == "converted":
            self._reward(lambda a: a.journey_id == plan.id)
        self.funnel.append(
            FunnelEvent(plan.id, plan.version, kind, inst.step, inst.variant, inst.instance_id)
        )
        self._drop(inst, None, why)

    def _drop(self, inst: Instance, kind: str | None, why: str) -> None:
        if kind is not None:
            self.funnel.append(
                FunnelEvent(
                    inst.journey_id, inst.version, kind, inst.step, inst.variant, inst.instance_id
                )
            )
        n = self._position(inst.instance_id)
        current = self.instances.pop(n) if n >= 0 else inst
        if current.timer_id:
            self.cancelled.append(current.timer_id)
        self.dropped.add(inst.instance_id)
        hist = self._history_of(inst.journey_id)
        self._set_history(inst.journey_id, History(hist.entries, hist.last_entry_at, self.now))
        self._note(inst, why)

    # -- helpers -------------------------------------------------------------------

    def _put(self, inst: Instance, replacing: Instance | None = None) -> None:
        n = self._position((replacing or inst).instance_id)
        if n >= 0:
            self.instances[n] = inst

    def _position(self, instance_id: str) -> int:
        """Where the live instance ``instance_id`` is in the working list (ids are unique
        among live instances); -1 if it is not live."""
        for n, live in enumerate(self.instances):
            if live.instance_id == instance_id:
                return n
        return -1

    def _history_of(self, journey: str) -> History:
        source = self.history if self.history is not None else self.state.history
        return source.get(journey) or History()

    def _set_history(self, journey: str, hist: History) -> None:
        if self.history is None:
            self.history = dict(self.state.history)
        self.history[journey] = hist

    def _silence(self) -> dict[str, int]:
        if self.silence is None:
            self.silence = dict(self.state.silence)
        return self.silence

    def _check(
        self, cond: Condition | None, plan: JourneyPlan, inst: Instance | None, what: str
    ) -> bool:
        if cond is None:
            return True
        result, error = cond.evaluate(self._variables(plan, inst))
        if self.trace is not None:
            outcome = f"error ({error}) -> false" if error else str(result).lower()
            self.trace.append(f"{self._who(plan, inst)}: {what} `{cond.source}` = {outcome}")
        return result

    def _variables(self, plan: JourneyPlan, inst: Instance | None) -> Callable[[str], Any]:
        def value(name: str) -> Any:
            if name == "event":
                return self._event_value()
            if name == "profile":
                if self._profile_cel is None:
                    self._profile_cel = as_cel(self.profile, self.now)
                return self._profile_cel
            if name == "now":
                return self.now
            return _journey_value(plan, inst)

        return value

    def _event_value(self) -> Mapping[str, Any]:
        if self._event_cel is None:
            self._event_cel = event_variable(self.event)
        return self._event_cel

    def _who(self, plan: JourneyPlan, inst: Instance | None) -> str:
        return f"{plan.key}" + (f" {inst.instance_id} @{inst.step}" if inst else "")

    def _note(self, inst: Instance, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{inst.journey_id}@{inst.version} {inst.instance_id}: {text}")

    def _note_plan(self, plan: JourneyPlan, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{plan.key}: {text}")

    def _stale(self, timer_id: str) -> Decision:
        why = (f"timer {timer_id}: stale or unknown, ignored",) if self.trace is not None else ()
        return Decision(self.state, trace=why)

    def _judge(
        self,
    ) -> tuple[
        list[NextBestAction],
        Mapping[str, tuple[int, ...]],
        list[tuple[NextBestAction, str]],
        list[tuple[NextBestAction, str]],
    ]:
        """The contact policy over this decision's actions, highest priority first."""
        policy = self.catalog.policy
        contacts = self.state.contacts  # ``record_send`` returns a new ledger
        sent: list[NextBestAction] = []
        suppressed: list[tuple[NextBestAction, str]] = []
        deferred: list[tuple[NextBestAction, str]] = []
        actions = self.actions
        if len(actions) > 1:
            actions = sorted(actions, key=lambda a: -a.priority)
        for action in actions:
            category, if_capped = self.categories.get(action.action_id, (MARKETING, "defer"))
            verdict = judge(policy, action, category, if_capped, self.profile, contacts, self.now)
            if verdict.kind == "send":
                sent.append(action)
                if category == MARKETING and policy.caps:
                    contacts = record_send(policy, contacts, action.channel, self.now)
                continue
            reason = verdict.reason or ""
            if verdict.kind == "drop":
                suppressed.append((action, reason))
                self._say(f"policy: {action.step} on {action.channel} dropped ({verdict.detail})")
                continue
            assert verdict.until is not None
            until = iso(verdict.until)
            held = replace(action, reason=f"{action.reason}; deferred by {verdict.detail}")
            self.pending.append(Pending(held, category, if_capped))
            self.timers.append(
                Timer(self.customer, ids.defer_timer_id(action.action_id), verdict.until)
            )
            deferred.append((action, reason))
            self._say(
                f"policy: {action.step} on {action.channel} deferred to {until} ({verdict.detail})"
            )
        return sent, contacts, suppressed, deferred

    def _say(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(line)

    def _remember_sent(self) -> tuple[SentAction, ...]:
        """The recent actions with this decision's added (to the working copy)."""
        sent, arms = self.sent, self.arms
        for a in self.actions:
            sent.append(
                SentAction(
                    a.action_id, a.journey_id, a.step, a.channel, a.created_at, a.reason,
                    arms.get(a.action_id),
                )
            )  # fmt: skip
        return tuple(sent[-RECENT_ACTIONS:])

    def _decision(self, seen: dict[str, int] | None) -> Decision:
        s = self.state
        contacts: Mapping[str, tuple[int, ...]] = s.contacts
        suppressed: list[tuple[NextBestAction, str]] = []
        deferred: list[tuple[NextBestAction, str]] = []
        if self.actions:
            self.actions, contacts, suppressed, deferred = self._judge()
        # Built positionally, and the bandit's pulls only when an offer was chosen: this
        # runs once per event (a fired reminder: 351.7k -> 340.2k instructions).
        state = CustomerState(
            s.customer_id,
            self.profile,
            tuple(self.instances),
            self.history if self.history is not None else s.history,
            self.silence if self.silence is not None else s.silence,
            seen if seen is not None else s.seen,
            self._remember_sent() if self.actions or self.wins else s.sent,
            tuple(self.pending) if self.pending else (),
            contacts,
            s.identities,
        )
        return Decision(
            state,
            tuple(self.actions),
            tuple(self.timers),
            tuple(self.cancelled),
            tuple(self.funnel),
            tuple(self.trace) if self.trace else (),
            tuple(suppressed),
            tuple(deferred),
            tuple([self.arms[a.action_id] for a in self.actions if a.action_id in self.arms])
            if self.arms
            else (),
            tuple(self.wins),
        )


def _journey_value(plan: JourneyPlan, inst: Instance | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": plan.id, "version": plan.version}
    if inst is not None:
        out.update(
            instance=inst.instance_id, step=inst.step, entered_at=inst.entered_at,
            step_at=inst.step_at, visits=dict(inst.visits),
        )  # fmt: skip
        if inst.variant is not None:
            out["variant"] = inst.variant
        if inst.last_action_id is not None:
            out["last_action_id"] = inst.last_action_id
    return out
