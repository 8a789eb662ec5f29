"""JSON values as the scalars touchpoint maps hold (schemas/README.md): nested objects
and arrays travel as JSON strings, with sorted keys - the rule of
``Touchpoint.from_json`` - and integers beyond Avro's ``long`` as decimal strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from orchestrator.records import Scalar

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def scalar(value: Any) -> Scalar:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _LONG_MIN <= value <= _LONG_MAX else str(value)
    if value is None or isinstance(value, bool | float | str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def scalars(obj: Mapping[str, Any]) -> dict[str, Scalar]:
    """Raises ``ValueError`` for values JSON cannot carry."""
    try:
        return {str(k): scalar(v) for k, v in obj.items()}
    except orjson.JSONEncodeError as exc:
        raise ValueError(str(exc)) from None
