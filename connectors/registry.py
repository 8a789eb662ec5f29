"""Finding connectors: the ``rota.connectors`` entry-point group, and nothing else.

A package adds a connector by declaring, in its ``pyproject.toml``::

    [project.entry-points."rota.connectors"]
    mychannel = "mypackage.mychannel:MyChannelConnector"

Rota's own (``log``, ``webhook``, ``email``, ``sms``, ``push``, ``kafka``) are declared
the same way, so the project must be installed (``pip install -e .``, which ``make``
does) for them to be found.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from connectors.base import Connector

GROUP = "rota.connectors"


class ConnectorNotFound(LookupError):
    """No installed connector has that name; the message lists the ones that exist."""


def available() -> dict[str, EntryPoint]:
    """Installed connectors by name (the entry points are not loaded)."""
    return {ep.name: ep for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name)}


def load(name: str) -> type[Connector]:
    found = available()
    if name not in found:
        known = ", ".join(found) or "none - is the rota package installed (pip install -e .)?"
        raise ConnectorNotFound(f"no connector named {name!r}; installed: {known}")
    loaded = found[name].load()
    if not isinstance(loaded, type) or not callable(getattr(loaded, "from_config", None)):
        raise TypeError(
            f"entry point {name} = {found[name].value} is not a connector class "
            "(needs from_config, deliver, close, name and channels)"
        )
    connector: type[Connector] = loaded
    return connector
