"""The ``event`` variable of journey conditions (journeys/README.md, "Conditions (CEL)").

A condition reads one or two fields of it (``event.properties.value``,
``event.channel``), so a touchpoint's fields are looked up as they are read
(``EventView``) rather than copied into a dict first: the copy - twelve keys, the
context's set fields - cost more than evaluating the condition. Read whole, it is the
same mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from operator import attrgetter
from typing import Any

from orchestrator.core.decision import TimerFired
from orchestrator.records import Touchpoint

#: Key -> its value in a touchpoint; a key whose value is None is absent (use ``has()``).
_FIELDS: Mapping[str, Callable[[Touchpoint], Any]] = {
    **{
        key: attrgetter(key)
        for key in ("event_id", "name", "type", "channel", "occurred_at", "properties", "traits")
    },
    "context": lambda tp: tp.context.present(),
    **{key: attrgetter(key) for key in ("action_id", "source", "anonymous_id", "customer_id")},
}
#: The event a fired timer is, to conditions.
TIMER_EVENT = "$timer"


class EventView(Mapping[str, Any]):
    """A touchpoint as the ``event`` variable, each field made when it is read."""

    __slots__ = ("_tp",)

    def __init__(self, tp: Touchpoint):
        self._tp = tp

    def __getitem__(self, key: str) -> Any:
        get = _FIELDS.get(key)
        value = None if get is None else get(self._tp)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        get = _FIELDS.get(key)
        value = None if get is None else get(self._tp)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        get = _FIELDS.get(key) if isinstance(key, str) else None
        return get is not None and get(self._tp) is not None

    def __iter__(self) -> Iterator[str]:
        tp = self._tp
        return (key for key, get in _FIELDS.items() if get(tp) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def event_variable(event: Touchpoint | TimerFired) -> Mapping[str, Any]:
    """What ``event`` is in a condition evaluated on ``event``."""
    if isinstance(event, Touchpoint):
        return EventView(event)
    return {
        "name": TIMER_EVENT,
        "type": "timer",
        "channel": "",
        "timer_id": event.timer_id,
        "due_at": event.due_at,
        "occurred_at": event.now,
        "properties": {},
        "traits": {},
        "context": {},
    }
