"""Write keys: who may send to the HTTP ingest, and what each source is.

Segment SDKs authenticate with a write key as the HTTP Basic username. Each key names
a source and its default channel (used when a message's ``context`` does not say where
it happened, e.g. from a server-side library). Configured as
``ROTA_INGEST_WRITE_KEYS="KEY:CHANNEL[:SOURCE],..."`` or a file
(``ROTA_INGEST_WRITE_KEYS_FILE``) with one ``KEY CHANNEL [SOURCE]`` per line.

Keys are secrets: they are never logged, and ``repr`` of a ``WriteKeys`` shows only
how many there are.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.:@/-]{1,100}$")


class WriteKeyError(ValueError):
    """The write-key configuration is malformed; the message says where (never the key)."""


@dataclass(frozen=True, slots=True)
class Source:
    """What a write key stands for: the touchpoints' ``source`` and default channel."""

    name: str
    channel: str


class WriteKeys:
    """Write key -> ``Source``. Lookups compare every key in constant time."""

    def __init__(self, keys: Mapping[str, Source]) -> None:
        self._keys = [(k.encode(), s) for k, s in keys.items()]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"WriteKeys(<{len(self._keys)} keys>)"

    def lookup(self, key: str | None) -> Source | None:
        if not key:
            return None
        wanted = key.encode()
        found: Source | None = None
        for candidate, source in self._keys:
            if hmac.compare_digest(candidate, wanted):
                found = source
        return found

    @classmethod
    def parse(cls, text: str, *, where: str = "ROTA_INGEST_WRITE_KEYS") -> WriteKeys:
        """``KEY:CHANNEL[:SOURCE]`` entries separated by commas or newlines; in files,
        whitespace may separate the fields and ``#`` starts a comment."""
        keys: dict[str, Source] = {}
        entries: Iterable[str] = re.split(r"[,\n]", text)
        for number, raw in enumerate(entries, start=1):
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            parts = entry.split(":") if ":" in entry else entry.split()
            parts = [p.strip() for p in parts]
            if len(parts) not in (2, 3) or not all(parts):
                raise WriteKeyError(
                    f"{where}: entry {number} is not KEY:CHANNEL[:SOURCE] "
                    f"(it has {len(parts)} field(s))"
                )
            key, channel = parts[0], parts[1]
            name = parts[2] if len(parts) == 3 else f"http:{channel}"
            if not _SOURCE_NAME.match(channel) or not _SOURCE_NAME.match(name):
                raise WriteKeyError(f"{where}: entry {number} has an invalid channel or source")
            if key in keys:
                raise WriteKeyError(f"{where}: entry {number} repeats an earlier key")
            keys[key] = Source(name=name, channel=channel)
        return cls(keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WriteKeys:
        inline = env.get("ROTA_INGEST_WRITE_KEYS", "").strip()
        path = env.get("ROTA_INGEST_WRITE_KEYS_FILE", "").strip()
        keys: dict[str, Source] = {}
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise WriteKeyError(
                    f"ROTA_INGEST_WRITE_KEYS_FILE: cannot read {path}: {exc}"
                ) from None
            keys.update(dict(cls.parse(text, where=path)._pairs()))
        if inline:
            for key, source in cls.parse(inline)._pairs():
                if key in keys:
                    raise WriteKeyError("ROTA_INGEST_WRITE_KEYS repeats a key of the file")
                keys[key] = source
        if not keys:
            raise WriteKeyError(
                "no write keys: set ROTA_INGEST_WRITE_KEYS=KEY:CHANNEL[:SOURCE],... or "
                "ROTA_INGEST_WRITE_KEYS_FILE (the ingest accepts nothing without one)"
            )
        return cls(keys)

    def _pairs(self) -> list[tuple[str, Source]]:
        return [(k.decode(), s) for k, s in self._keys]
