"""A channel service in a dozen lines: an SMS gateway that reports purchases made over
SMS and delivers the actions Rota decides for the ``sms`` channel.

    ROTA_KAFKA_BOOTSTRAP=localhost:9092 python examples/channel_service.py

Options: ``--channel``, ``--group``, ``--idle-timeout S`` (stop after S seconds without
an action; default: run until Ctrl-C). ``ROTA_TOPIC_PREFIX`` as for every Rota process.
"""

from __future__ import annotations

import argparse
import os

from orchestrator.publish import Publisher
from orchestrator.records import NextBestAction


def send_sms(action: NextBestAction) -> None:
    """Stand-in for the real delivery (an SMS provider's API call)."""
    print(f"sms: {action.template or action.step} for {action.customer_id}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channel", default="sms")
    p.add_argument("--group", default="example-sms-gateway")
    p.add_argument("--idle-timeout", type=float, default=None)
    args = p.parse_args()
    bootstrap = os.environ["ROTA_KAFKA_BOOTSTRAP"]
    prefix = os.environ.get("ROTA_TOPIC_PREFIX", "rota")

    with Publisher(bootstrap, prefix, source="example-sms-gateway") as rota:
        # Something the customer did, reported by this channel.
        rota.publish_touchpoint(
            name="Order Completed",
            channel=args.channel,
            customer_id="cust-000042",
            properties={"order_id": "sms-1001", "total": 19.9, "currency": "EUR"},
        )
        rota.flush()  # raises if Kafka did not take it
        # What Rota wants this channel to do; report back what happened.
        with rota.consume_actions(
            args.channel, args.group, idle_timeout=args.idle_timeout
        ) as actions:
            for action in actions:
                send_sms(action)
                rota.publish_outcome(action, "Action Delivered")


if __name__ == "__main__":
    main()
