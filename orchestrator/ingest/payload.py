"""Request bodies of the HTTP ingest: size limits, gzip, JSON. Pure.

The limits are the Segment HTTP Tracking API's: 32 KB per call, 500 KB per batch and
32 KB per message inside a batch. They apply to the *decompressed* body, and a gzip
body is inflated only up to the limit, so a small compressed bomb cannot make the
server allocate more than that.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

CALL_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024
MESSAGE_LIMIT = 32 * 1024


class PayloadError(ValueError):
    """The body cannot be taken: ``code`` is the reject reason (a metric label and the
    ``code`` of the JSON answer), ``message`` the human explanation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode(raw: bytes, *, encoding: str | None, limit: int) -> Any:
    """The JSON value of a request body sent with ``Content-Encoding: encoding``."""
    body = inflate(raw, encoding=encoding, limit=limit)
    if len(body) > limit:
        raise too_large(len(body), limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("invalid_json", f"body is not valid JSON: {exc}") from None


def inflate(raw: bytes, *, encoding: str | None, limit: int) -> bytes:
    coding = (encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        return raw
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise PayloadError(
            "unsupported_encoding", f"Content-Encoding {coding!r} is not supported (use gzip)"
        )
    # wbits: 16+ = gzip header, 32+ = detect zlib or gzip (deflate as sent by clients).
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in coding else 32 + 15)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise PayloadError("invalid_encoding", f"body is not valid {coding}: {exc}") from None
    if len(body) > limit:
        raise too_large(None, limit)
    if not inflater.eof:
        raise PayloadError("invalid_encoding", f"{coding} body is truncated")
    return body


def too_large(size: int | None, limit: int) -> PayloadError:
    got = f"{size} bytes" if size is not None else "more"
    return PayloadError(
        "payload_too_large", f"payload too large: {got} (limit {limit} bytes after decompression)"
    )
