"""The customer inspector's answers: "where is this customer, and why did they get that
message?", and which journeys run with what funnel.

Pure functions from the core's state to JSON-ready dicts, so the same answer comes from
the HTTP API (``orchestrator.worker.web``), a test or a script. The API's contract is
``OPENAPI`` below; docs/README show examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from orchestrator.core.profile import CONTACT_TRAITS, reachable
from orchestrator.core.state import CustomerState, Instance
from orchestrator.funnel import TOTALS, Funnel, funnels
from orchestrator.journey.catalog import Catalog
from orchestrator.journey.plan import step_type
from orchestrator.records import CHANNELS, iso


def _time(ms: int | None) -> str | None:
    return None if ms is None else iso(ms)


def customer_view(state: CustomerState, catalog: Catalog, *, partition: int) -> dict[str, Any]:
    """Everything the engine holds about one customer, as support reads it."""
    p = state.profile
    return {
        "customer_id": state.customer_id,
        "partition": partition,
        "profile": {
            "traits": dict(p.traits),
            "stage": p.stage,
            "timezone": p.timezone,
            "first_seen_at": _time(p.first_seen_at),
            "last_event_at": _time(p.last_event_at),
            "event_counts": dict(p.counts),
            "last_event_by_name": {k: iso(v) for k, v in p.last_at.items()},
            "last_seen_by_channel": {k: iso(v) for k, v in p.last_seen.items()},
            "order_count": p.order_count,
            "total_spent": p.total_spent,
            "scores": {
                k: v
                for k, v in (("nps", p.nps), ("csat", p.csat), ("ces", p.effort))
                if v is not None
            },
        },
        "identities": _identities(state),
        "consent": {channel: _consent(state, channel) for channel in CHANNELS},
        "journeys": [_instance(i, catalog) for i in state.instances],
        "recent_actions": [
            _note(a.action_id, a.journey_id, a.step, a.channel, a.reason, at=a.at)
            for a in reversed(state.sent)
        ],
        "deferred_actions": [
            _note(a.action_id, a.journey_id, a.step, a.channel, a.reason)
            for a in (p.action for p in state.pending)
        ],
        "journey_history": {
            journey: {
                "entries": h.entries,
                "last_entry_at": _time(h.last_entry_at),
                "last_exit_at": _time(h.last_exit_at),
            }
            for journey, h in sorted(state.history.items())
        },
    }


def _note(
    action_id: str, journey: str, step: str, channel: str, reason: str, *, at: int | None = None
) -> dict[str, Any]:
    """An action as the inspector lists it (``ActionNote`` in the OpenAPI document)."""
    note = {
        "action_id": action_id,
        "journey_id": journey,
        "step": step,
        "channel": channel,
        "reason": reason,
    }
    return note if at is None else {**note, "at": iso(at)}


def _identities(state: CustomerState) -> dict[str, Any]:
    traits = state.profile.traits
    contacts = {c: traits[c] for c in CONTACT_TRAITS.values() if traits.get(c) is not None}
    return {
        "customer_id": state.customer_id,
        "linked": list(state.identities),
        "contact_points": contacts,
    }


def _consent(state: CustomerState, channel: str) -> dict[str, Any]:
    p = state.profile
    contact = CONTACT_TRAITS.get(channel)
    out: dict[str, Any] = {
        "reachable": reachable(p, channel),
        "unsubscribed": channel in p.unsubscribed,
    }
    if f"{channel}_consent" in p.traits:
        out["consent"] = p.traits[f"{channel}_consent"]
    if contact:
        out["bounced"] = p.traits.get(f"{contact}_bounced") is True
    return out


def _instance(inst: Instance, catalog: Catalog) -> dict[str, Any]:
    plan = catalog.plans.get((inst.journey_id, inst.version))
    step = plan.steps.get(inst.step) if plan else None
    return {
        "journey_id": inst.journey_id,
        "version": inst.version,
        "name": plan.name if plan else None,
        "instance_id": inst.instance_id,
        "step": inst.step,
        "step_type": step_type(step) if step else None,
        "entered_at": iso(inst.entered_at),
        "step_at": iso(inst.step_at),
        "variant": inst.variant,
        "visits": dict(inst.visits),
        "waiting_until": _time(inst.due_at),
        "timer_id": inst.timer_id,
        "last_action_id": inst.last_action_id,
    }


def journeys_view(
    catalog: Catalog, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[dict[str, Any]]:
    """Live journey versions with this worker's funnel counts.

    ``samples`` are the ``rota_journey_funnel_total`` samples (labels, value) of this
    process; across workers, sum them in Prometheus.
    """
    counts = funnels(samples)
    out = []
    for (journey_id, version), plan in sorted(catalog.plans.items()):
        current = catalog.current.get(journey_id)
        out.append(
            {
                "journey_id": journey_id,
                "version": version,
                "name": plan.name,
                "current": current is not None and current.version == version,
                "paused": journey_id in catalog.paused,
                "steps": list(plan.steps),
                "funnel": asdict(counts.get(journey_id, Funnel())),
            }
        )
    return out


_TIME = {"type": ["string", "null"], "format": "date-time"}
_OBJECT = {"type": "object"}

#: The API's contract (OpenAPI 3.1), served at ``/openapi.json``.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Rota worker API",
        "version": "1",
        "description": (
            "Customer inspector and journey overview, served by every worker. A "
            "customer request is answered by the worker that owns the customer's "
            "partition; any worker can be asked."
        ),
    },
    "paths": {
        "/v1/customers/{customer_id}": {
            "get": {
                "summary": "A customer's profile, consent, live journeys and last actions",
                "parameters": [
                    {
                        "name": "customer_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The customer",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Customer"}
                            }
                        },
                    },
                    "404": {"description": "No state for this customer (never seen, or forgotten)"},
                    "503": {"description": "Partitions are moving (rebalance): retry"},
                },
            }
        },
        "/v1/journeys": {
            "get": {
                "summary": "Journey versions loaded, with this worker's funnel counts",
                "responses": {
                    "200": {
                        "description": "Journeys",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["journeys"],
                                    "properties": {
                                        "journeys": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Journey"},
                                        }
                                    },
                                }
                            }
                        },
                    }
                },
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: joined the group and state recovered",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not yet"}},
            }
        },
        "/live": {
            "get": {
                "summary": "Liveness: the worker's event loop answers",
                "responses": {"200": {"description": "Alive"}},
            }
        },
    },
    "components": {
        "schemas": {
            "Customer": {
                "type": "object",
                "required": [
                    "customer_id",
                    "partition",
                    "profile",
                    "identities",
                    "consent",
                    "journeys",
                    "recent_actions",
                    "journey_history",
                ],
                "properties": {
                    "customer_id": {"type": "string"},
                    "partition": {"type": "integer"},
                    "profile": {
                        "type": "object",
                        "required": ["traits", "event_counts"],
                        "properties": {
                            "traits": _OBJECT,
                            "stage": {"type": ["string", "null"]},
                            "timezone": {"type": ["string", "null"]},
                            "first_seen_at": _TIME,
                            "last_event_at": _TIME,
                            "event_counts": _OBJECT,
                            "last_event_by_name": _OBJECT,
                            "last_seen_by_channel": _OBJECT,
                            "order_count": {"type": "integer"},
                            "total_spent": {"type": "number"},
                            "scores": _OBJECT,
                        },
                    },
                    "identities": {
                        "type": "object",
                        "required": ["customer_id", "linked", "contact_points"],
                        "properties": {
                            "customer_id": {"type": "string"},
                            "linked": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "Visitors merged in (anon:<anonymous id>)",
                            },
                            "contact_points": _OBJECT,
                        },
                    },
                    "consent": {
                        "type": "object",
                        "description": "Per channel",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["reachable", "unsubscribed"],
                            "properties": {
                                "reachable": {"type": "boolean"},
                                "unsubscribed": {"type": "boolean"},
                                "consent": {},
                                "bounced": {"type": "boolean"},
                            },
                        },
                    },
                    "journeys": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["journey_id", "version", "instance_id", "step"],
                            "properties": {
                                "journey_id": {"type": "string"},
                                "version": {"type": "integer"},
                                "name": {"type": ["string", "null"]},
                                "instance_id": {"type": "string"},
                                "step": {"type": "string"},
                                "step_type": {"type": ["string", "null"]},
                                "entered_at": _TIME,
                                "step_at": _TIME,
                                "variant": {"type": ["string", "null"]},
                                "visits": _OBJECT,
                                "waiting_until": _TIME,
                                "timer_id": {"type": ["string", "null"]},
                                "last_action_id": {"type": ["string", "null"]},
                            },
                        },
                    },
                    "recent_actions": {
                        "type": "array",
                        "description": "Newest first",
                        "items": {"$ref": "#/components/schemas/ActionNote"},
                    },
                    "deferred_actions": {
                        "type": "array",
                        "description": "Held back by the contact policy (quiet hours, caps)",
                        "items": {"$ref": "#/components/schemas/ActionNote"},
                    },
                    "journey_history": _OBJECT,
                },
            },
            "ActionNote": {
                "type": "object",
                "required": ["action_id", "journey_id", "step", "channel", "reason"],
                "properties": {
                    "action_id": {"type": "string"},
                    "journey_id": {"type": "string"},
                    "step": {"type": "string"},
                    "channel": {"type": "string"},
                    "at": {**_TIME, "description": "When it was sent (absent: deferred)"},
                    "reason": {"type": "string"},
                },
            },
            "Journey": {
                "type": "object",
                "required": ["journey_id", "version", "name", "current", "funnel"],
                "properties": {
                    "journey_id": {"type": "string"},
                    "version": {"type": "integer"},
                    "name": {"type": "string"},
                    "current": {"type": "boolean"},
                    "paused": {"type": "boolean"},
                    "steps": {"type": "array", "items": {"type": "string"}},
                    "funnel": {
                        "type": "object",
                        "properties": {
                            **{k: {"type": "integer"} for k in TOTALS},
                            "steps": _OBJECT,
                        },
                    },
                },
            },
        }
    },
}
