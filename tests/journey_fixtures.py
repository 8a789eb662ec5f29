"""A small journey and touchpoint builders shared by the worker's tests."""

from __future__ import annotations

from orchestrator.journey.catalog import Catalog
from orchestrator.records import Context, Touchpoint

#: Sign-up → welcome email at once → an hour later, tips by push → end.
WELCOME = """
id: test_welcome
name: Test welcome
version: 1
priority: 10
entry:
  event: Signed Up
  reentry: never
steps:
  send_welcome:
    type: action
    channel: email
    template: welcome_1
    next: wait_an_hour
  wait_an_hour:
    type: wait
    duration: 1h
    next: send_tips
  send_tips:
    type: action
    channel: push
    template: tips
    next: done
  done:
    type: end
"""


def catalog_from_yaml(text: str = WELCOME) -> Catalog:
    return Catalog.from_yaml(text)


def touchpoint(
    customer: str, name: str, *, at: int, event_id: str | None = None, **properties: object
) -> Touchpoint:
    return Touchpoint(
        event_id=event_id or f"{customer}-{name}-{at}",
        type="track",
        name=name,
        channel="web",
        occurred_at=at,
        customer_id=customer,
        properties=properties,  # type: ignore[arg-type]
        # Contact points, so that the contact policy finds the customer reachable.
        traits={"email": f"{customer}@example.com", "push_token": f"token-{customer}"},
        context=Context(timezone="UTC"),
    )
