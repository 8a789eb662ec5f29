"""The one place Kafka security becomes client configuration.

Rota talks to Kafka through two libraries: confluent-kafka (librdkafka) for the CLI,
connectors, ingest, publisher and admin clients, and aiokafka through Faust for the
worker. Both must encrypt and authenticate the same way, so neither builds its own
settings: confluent clients start from ``client_config(bootstrap)`` and ``faust.App``
takes ``faust_credentials()``. Both read ``KafkaSecurity`` (``orchestrator.settings``)
from the process environment, as the bootstrap address is; the defaults (PLAINTEXT)
add nothing, so a plaintext broker sees exactly the clients it saw before.

The dictionaries returned here hold the SASL password in clear (the libraries need it):
never log them.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from orchestrator.settings import (
    KAFKA_SECURITY_VARIABLES,
    PASSWORD_FILE,
    KafkaSecurity,
    SettingsError,
)

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

#: A confluent-kafka client's configuration, as its constructors type it.
ClientConfig = dict[str, str | int | float | bool]


def current(env: Mapping[str, str] | None = None) -> KafkaSecurity:
    """This process's security settings. Cached by the variables' values, so clients
    created in a loop do not re-read the password file, while a test that changes the
    environment still gets what it set."""
    env = os.environ if env is None else env
    names = (*KAFKA_SECURITY_VARIABLES.values(), PASSWORD_FILE)
    return _from_values(tuple((name, env.get(name, "")) for name in names))


@functools.lru_cache(maxsize=8)
def _from_values(values: tuple[tuple[str, str], ...]) -> KafkaSecurity:
    return KafkaSecurity.from_env(dict(values))


def librdkafka_config(security: KafkaSecurity) -> dict[str, str]:
    """librdkafka's names for ``security``: nothing at all for PLAINTEXT."""
    if security.protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": security.protocol}
    if security.uses_sasl:
        assert security.sasl_mechanism and security.sasl_username and security.sasl_password
        config["sasl.mechanism"] = security.sasl_mechanism
        config["sasl.username"] = security.sasl_username
        config["sasl.password"] = security.sasl_password
    if security.uses_ssl:
        files = {
            "ssl.ca.location": security.ssl_cafile,
            "ssl.certificate.location": security.ssl_certfile,
            "ssl.key.location": security.ssl_keyfile,
        }
        config.update({key: str(path) for key, path in files.items() if path is not None})
    return config


def client_config(bootstrap: str, security: KafkaSecurity | None = None) -> ClientConfig:
    """The start of every confluent-kafka client's configuration: spread it into the
    client's own settings (``Producer({**client_config(bootstrap), "acks": "all"})``).
    ``security`` defaults to the process's (``current()``)."""
    return {
        "bootstrap.servers": bootstrap,
        **librdkafka_config(current() if security is None else security),
    }


def producer_config(bootstrap: str, security: KafkaSecurity | None = None) -> ClientConfig:
    """``client_config`` for a producer. Producers also agree on where a key goes:
    Kafka's default partitioner (murmur2, as the Java client, aiokafka and Faust use),
    not librdkafka's CRC32 default. A customer's events from every producer must land on
    the one partition that holds the customer's state, and the workers' API finds a
    customer's owner with the same hash."""
    return {**client_config(bootstrap, security), "partitioner": "murmur2_random"}


def ssl_context(security: KafkaSecurity | None = None) -> ssl.SSLContext | None:
    """What aiokafka needs for SSL and SASL_SSL (it takes a context, not file names):
    verifies the brokers against ``ssl_cafile`` (else the system's CAs), by certificate
    and host name as librdkafka does, and presents the client certificate when set.
    None for the plaintext protocols."""
    security = current() if security is None else security
    if not security.uses_ssl:
        return None
    cafile = security.ssl_cafile
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if cafile is None else str(cafile)
        )
    except ssl.SSLError as exc:
        _unusable("ssl_cafile", cafile, "a PEM CA bundle", exc)
    if security.ssl_certfile is not None:
        try:
            # The callback stops OpenSSL from prompting on the terminal for the password
            # of an encrypted key: a worker has no terminal, it would hang.
            context.load_cert_chain(
                security.ssl_certfile, security.ssl_keyfile, password=_no_key_password
            )
        except ssl.SSLError as exc:
            _unusable(
                "ssl_certfile",
                security.ssl_certfile,
                f"a PEM certificate matching the unencrypted key {security.ssl_keyfile}",
                exc,
            )
    return context


def faust_credentials(security: KafkaSecurity | None = None) -> CredentialsT | None:
    """``faust.App(broker_credentials=...)``: SASL credentials (with the SSL context for
    SASL_SSL, which is how Faust says "SASL over TLS"), SSL credentials, or None for
    PLAINTEXT (Faust's default). Faust hands them to every aiokafka client it makes."""
    import faust

    security = current() if security is None else security
    context = ssl_context(security)
    if security.uses_sasl:
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            mechanism=security.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _no_key_password() -> NoReturn:
    raise SettingsError(
        f"{KAFKA_SECURITY_VARIABLES['ssl_keyfile']}: the key is encrypted; "
        "give Rota an unencrypted key (protect it with file permissions or a Secret)"
    )


def _unusable(field: str, path: Path | None, wanted: str, exc: ssl.SSLError) -> NoReturn:
    raise SettingsError(
        f"{KAFKA_SECURITY_VARIABLES[field]}: {path} is not {wanted} ({exc.reason or exc})"
    ) from None
