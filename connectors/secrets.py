"""Credentials from the environment or from a file, never from logs.

Every credential ``ROTA_X`` may instead be given as ``ROTA_X_FILE``, the path of a file
holding it (Kubernetes and Docker secrets are mounted as files). A file is read again
when it changes, so short-lived tokens (an FCM OAuth access token refreshed every hour
by a sidecar) rotate without a restart. ``repr`` never shows the value.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from connectors.base import ConfigError


class Secret:
    def __init__(self, value: str | None = None, *, path: Path | None = None) -> None:
        if (value is None) == (path is None):
            raise ValueError("give a value or a path")
        self._value = value
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def get(self) -> str:
        """The current value (re-read from its file when the file changed)."""
        if self._path is None:
            assert self._value is not None
            return self._value
        with self._lock:
            stat = os.stat(self._path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp or self._value is None:
                self._value = self._path.read_text().strip()
                self._stamp = stamp
            return self._value

    def __repr__(self) -> str:
        return f"Secret(file={str(self._path)!r})" if self._path else "Secret(***)"


def secret(env: Mapping[str, str], variable: str, *, required: bool = True) -> Secret | None:
    """``variable`` or ``variable_FILE`` (not both); checked readable and non-empty now."""
    value = env.get(variable, "").strip()
    file_variable = f"{variable}_FILE"
    path = env.get(file_variable, "").strip()
    if value and path:
        raise ConfigError(variable, f"set either {variable} or {file_variable}, not both")
    if value:
        return Secret(value)
    if path:
        found = Secret(path=Path(path))
        try:
            if not found.get():
                raise ConfigError(file_variable, f"{path} is empty")
        except OSError as exc:
            raise ConfigError(file_variable, f"cannot read {path}: {exc.strerror}") from None
        return found
    if required:
        raise ConfigError(variable, f"is required (or {file_variable}: a file holding it)")
    return None
