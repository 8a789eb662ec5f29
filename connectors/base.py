"""The connector contract: what a channel connector is, and what it answers.

A connector turns one ``NextBestAction`` into one delivery attempt on its channel
(an HTTP call, an email, a push) and says how it went. Everything around that - Kafka,
retries, de-duplication, offsets, outcome events, dead letters, metrics - belongs to
``connectors.runner``, so a new connector is a small class with no Kafka in it.

Connectors are found through the ``rota.connectors`` entry-point group
(``connectors.registry``), never by importing modules for their side effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, Self

from orchestrator.records import NextBestAction, Scalar


class ConfigError(ValueError):
    """A connector's configuration is missing or wrong.

    ``variable`` names the environment variable to fix, so the message a user sees at
    start says exactly what to change.
    """

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    """The channel accepted the action."""
    FAILED = "failed"
    """It did not work this time; ``retryable`` says whether trying again may help."""
    REJECTED = "rejected"
    """The channel refused this action for good (bad request, bad template, no address)."""
    BOUNCED = "bounced"
    """The recipient's address does not exist or no longer works (a hard bounce: SMTP
    550 user unknown, an unregistered push token, an invalid phone number). Final, like
    a rejection, but about the customer's contact point rather than the action: the
    outcome tells the profile to stop using that contact point (``contact``)."""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one delivery attempt came to.

    ``retry_after`` is the provider's own request to wait (seconds, e.g. an HTTP
    ``Retry-After``); the runner honours it within its retry policy's cap.
    ``properties`` are added to the outcome touchpoint (provider codes, ``contact`` and
    ``bounce`` of a bounce); scalars only, and never the customer's address itself.
    """

    status: DeliveryStatus
    detail: str = ""
    retryable: bool = False
    provider_message_id: str | None = None
    retry_after: float | None = None
    properties: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.retryable and self.status is not DeliveryStatus.FAILED:
            raise ValueError(f"only a failed delivery can be retryable, not {self.status}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")

    @classmethod
    def delivered(cls, detail: str = "", provider_message_id: str | None = None) -> Self:
        return cls(DeliveryStatus.DELIVERED, detail, provider_message_id=provider_message_id)

    @classmethod
    def failed(
        cls, detail: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> Self:
        return cls(DeliveryStatus.FAILED, detail, retryable=retryable, retry_after=retry_after)

    @classmethod
    def rejected(cls, detail: str, **properties: Scalar) -> Self:
        return cls(DeliveryStatus.REJECTED, detail, properties=properties)

    @classmethod
    def bounced(cls, detail: str, *, contact: str, **properties: Scalar) -> Self:
        """A hard bounce of the customer's ``contact`` point (``email``, ``phone``,
        ``push_token``)."""
        return cls(
            DeliveryStatus.BOUNCED,
            detail,
            properties={"contact": contact, "bounce": "hard", **properties},
        )


class Connector(Protocol):
    """A channel connector.

    ``name`` is its entry-point name (``rota connector run NAME``) and a metrics label;
    ``channels`` are the action topics it consumes (``<prefix>.actions.<channel>``) -
    one connector may serve several channels (the log connector serves any).

    ``deliver`` may be called from several threads at once and must be thread-safe.
    It should return a result for every failure it understands and let only its own
    bugs raise: the runner counts an exception as a retryable failure and logs it.
    """

    name: str
    channels: tuple[str, ...]

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """Build from ``ROTA_*`` environment variables; raise ``ConfigError`` naming the
        variable when one is missing or invalid, so a bad deployment fails at start."""
        ...

    def deliver(self, action: NextBestAction) -> DeliveryResult: ...

    def close(self) -> None:
        """Release connections; called once when the runner stops."""
        ...
