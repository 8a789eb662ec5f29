"""Keeping contact details out of what travels further than the profile.

Providers quote the recipient in their error texts ("550 <ada@example.com>: unknown"),
and those texts go into outcome touchpoints, dead letters and logs - which are kept
longer and read by more people than the profile. They pass through ``redact_addresses``
first.
"""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"<?[^\s<>@\"']+@[^\s<>@\"']+>?")


def redact_addresses(text: str) -> str:
    """``text`` with every email address (and its angle brackets) as ``<address>``."""
    return _ADDRESS.sub("<address>", text)
