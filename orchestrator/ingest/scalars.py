"""JSON values as the scalars touchpoint maps hold (schemas/README.md): nested objects
and arrays travel as JSON strings, with sorted keys - the rule of
``Touchpoint.from_json`` - and integers beyond Avro's ``long`` as decimal strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from orchestrator.records import Scalar, to_scalar

#: The one rule, shared with ``Touchpoint.from_json``.
scalar = to_scalar


def scalars(obj: Mapping[str, Any]) -> dict[str, Scalar]:
    """Raises ``ValueError`` for values JSON cannot carry."""
    try:
        return {str(k): scalar(v) for k, v in obj.items()}
    except orjson.JSONEncodeError as exc:
        raise ValueError(str(exc)) from None
