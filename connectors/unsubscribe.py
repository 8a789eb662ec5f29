"""One-click unsubscribe links: signed tokens the feedback receiver can trust.

The email connector puts ``List-Unsubscribe: <https://.../unsubscribe?token=T>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058) on every message and
offers the same URL to templates as ``unsubscribe_url``. When the customer clicks, their
mail client POSTs to that URL; ``rota feedback serve`` answers it and publishes an
``Unsubscribed`` touchpoint, so the profile stops the channel.

The token names the customer, the channel and the action, and is signed with
HMAC-SHA256 under ``ROTA_UNSUBSCRIBE_SECRET`` (shared by the connector and the
receiver): nobody can unsubscribe someone else by editing a URL. It is not encrypted -
it travels only to the customer it names - and it does not expire: an unsubscribe link
in an old email must keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson


class BadToken(ValueError):
    """The token is malformed or its signature does not match."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    customer_id: str
    channel: str
    action_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: bytes, request: Unsubscribe) -> str:
    body = orjson.dumps({"c": request.customer_id, "ch": request.channel, "a": request.action_id})
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def read_token(secret: bytes, token: str) -> Unsubscribe:
    try:
        body_text, mac_text = token.split(".", 1)
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        raise BadToken("not a token") from None
    if not hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), mac):
        raise BadToken("bad signature")
    try:
        data = orjson.loads(body)
        return Unsubscribe(str(data["c"]), str(data["ch"]), str(data["a"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise BadToken("malformed token body") from None


def unsubscribe_url(base_url: str, secret: bytes, request: Unsubscribe) -> str:
    """``base_url`` with ``token=...`` added to its query."""
    parts = urlsplit(base_url)
    token = urlencode({"token": make_token(secret, request)})
    query = f"{parts.query}&{token}" if parts.query else token
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
