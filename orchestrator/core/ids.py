"""Deterministic identifiers: the same inputs give the same ids on every replay.

Connectors de-duplicate deliveries by action id, so an action id must depend only on
what the decision was about - never on wall-clock time, randomness or process state.
"""

from __future__ import annotations

from hashlib import blake2b


def action_id(
    customer: str, journey: str, version: int, instance: str, step: str, visit: int
) -> str:
    """32 hex chars naming one visit of one step by one journey instance."""
    key = f"{customer}|{journey}|{version}|{instance}|{step}|{visit}".encode()
    return blake2b(key, digest_size=16).hexdigest()


def instance_id(journey: str, entry: int) -> str:
    """The ``entry``-th (1-based) instance of ``journey`` for a customer."""
    return f"{journey}#{entry}"


def step_timer_id(instance: str, move: int) -> str:
    """The timer of an instance's ``move``-th step change: unique per customer, and a new
    id whenever the instance waits again, so a late fire of an old wait is recognised."""
    return f"{instance}:{move}"


SILENCE_PREFIX = "silence:"


def silence_timer_id(journey: str) -> str:
    return SILENCE_PREFIX + journey


DEFER_PREFIX = "defer:"


def defer_timer_id(action_id: str) -> str:
    return DEFER_PREFIX + action_id


def bucket(customer: str, journey: str, step: str) -> float:
    """A number in [0, 100) fixed for (customer, journey, split step): the split
    assignment. Independent of the version, so a customer keeps their variant when the
    journey changes."""
    digest = blake2b(f"{customer}|{journey}|{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100
