"""The log connector: "delivers" an action by writing one log line about it.

For demos, local runs and channels whose real connector is not deployed yet: it can
serve any channel (``ROTA_LOG_CHANNELS``), so the loop closes with outcome events
either way. The line names the action, journey, step, channel and template - never
the customer id in clear: logs travel further than Kafka topics and are kept longer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Self

from connectors import config
from connectors.base import DeliveryResult
from orchestrator.records import NextBestAction

#: Where the delivery lines go (the CLI shows INFO of ``connectors.*``).
deliveries = logging.getLogger("connectors.log.deliveries")


def customer_ref(customer_id: str) -> str:
    """A short stable pseudonym to correlate log lines of one customer. It is not
    anonymisation (anyone holding the id can recompute it); it keeps ids out of logs."""
    return hashlib.sha256(customer_id.encode()).hexdigest()[:12]


class LogConnector:
    name = "log"

    def __init__(self, channels: tuple[str, ...] = ("log",)) -> None:
        self.channels = channels

    @classmethod
    def from_config(cls, env: Mapping[str, str]) -> Self:
        """``ROTA_LOG_CHANNELS``: comma-separated channels to serve (default ``log``)."""
        return cls(config.channels(env, "ROTA_LOG_CHANNELS", ("log",)))

    def deliver(self, action: NextBestAction) -> DeliveryResult:
        deliveries.info(
            "action %s channel=%s journey=%s v%d step=%s template=%s customer~%s",
            action.action_id,
            action.channel,
            action.journey_id,
            action.journey_version,
            action.step,
            action.template or "-",
            customer_ref(action.customer_id),
        )
        return DeliveryResult.delivered("logged")

    def close(self) -> None:
        pass
