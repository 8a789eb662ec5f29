"""Kafka security settings and what each client library is given, without a broker.

The certificates are real (a CA, a broker certificate for ``localhost`` and a client
certificate, made with ``cryptography``), so the SSL context is checked by a TLS
handshake and librdkafka loads the same files when a client is constructed.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import faust
import pytest
from confluent_kafka import Producer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism

from orchestrator import broker as brokers
from orchestrator import cli, kafka_security
from orchestrator.kafka_security import client_config, faust_credentials, ssl_context
from orchestrator.settings import KafkaSecurity, Settings, SettingsError

PASSWORD = "s3cret-Pa55word"


# -- a small PKI -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    encrypted_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    dns: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Rota Test CA", ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    issuer = (ca.subject, ca_key)
    return Pki(
        ca=_write_cert(d / "ca.crt", ca),
        server_cert=_write_cert(
            d / "server.crt", _certificate("kafka", server_key, issuer, dns="localhost")
        ),
        server_key=_write_key(d / "server.key", server_key),
        client_cert=_write_cert(d / "tls.crt", _certificate("rota-client", client_key, issuer)),
        client_key=_write_key(d / "tls.key", client_key),
        encrypted_client_key=_write_key(d / "encrypted.key", client_key, b"key-password"),
    )


def _env(pki: Pki, protocol: str, **more: str) -> dict[str, str]:
    """The variables of a complete configuration of ``protocol``."""
    env = {"ROTA_KAFKA_SECURITY_PROTOCOL": protocol}
    if protocol.startswith("SASL_"):
        env |= {
            "ROTA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ROTA_KAFKA_SASL_USERNAME": "rota",
            "ROTA_KAFKA_SASL_PASSWORD": PASSWORD,
        }
    if protocol.endswith("SSL"):
        env |= {
            "ROTA_KAFKA_SSL_CAFILE": str(pki.ca),
            "ROTA_KAFKA_SSL_CERTFILE": str(pki.client_cert),
            "ROTA_KAFKA_SSL_KEYFILE": str(pki.client_key),
        }
    return env | more


PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


# -- librdkafka (confluent-kafka) ------------------------------------------------------


def test_plaintext_by_default_adds_nothing_but_the_bootstrap_servers():
    security = KafkaSecurity.from_env({})
    assert security == KafkaSecurity(protocol="PLAINTEXT")
    assert client_config("kafka:9092", security) == {"bootstrap.servers": "kafka:9092"}
    assert ssl_context(security) is None
    assert faust_credentials(security) is None


def test_plaintext_ignores_what_the_deploy_files_carry_for_other_protocols():
    # deploy/kubernetes/config.yaml: a mechanism and a CA path that is not mounted, and
    # the optional Secret's user and password.
    security = KafkaSecurity.from_env(
        {
            "ROTA_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "ROTA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "ROTA_KAFKA_SSL_CAFILE": "/etc/rota/kafka-tls/ca.crt",
            "ROTA_KAFKA_SASL_USERNAME": "rota",
            "ROTA_KAFKA_SASL_PASSWORD": PASSWORD,
            "ROTA_KAFKA_SASL_PASSWORD_FILE": "/nonexistent",
        }
    )
    assert security == KafkaSecurity()
    assert client_config("k:1", security) == {"bootstrap.servers": "k:1"}


def test_ssl_maps_to_the_librdkafka_ssl_locations(pki):
    security = KafkaSecurity.from_env(_env(pki, "SSL"))
    assert client_config("k:1", security) == {
        "bootstrap.servers": "k:1",
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key),
    }


def test_ssl_without_files_verifies_against_the_system_cas():
    security = KafkaSecurity.from_env({"ROTA_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert client_config("k:1", security) == {
        "bootstrap.servers": "k:1",
        "security.protocol": "SSL",
    }
    context = ssl_context(security)
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_maps_to_the_librdkafka_sasl_keys(mechanism):
    security = KafkaSecurity.from_env(
        {
            "ROTA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "ROTA_KAFKA_SASL_MECHANISM": mechanism,
            "ROTA_KAFKA_SASL_USERNAME": "rota",
            "ROTA_KAFKA_SASL_PASSWORD": PASSWORD,
            # not used without TLS, so neither read nor passed on
            "ROTA_KAFKA_SSL_CAFILE": "/nonexistent/ca.crt",
        }
    )
    assert client_config("k:1", security) == {
        "bootstrap.servers": "k:1",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": "rota",
        "sasl.password": PASSWORD,
    }


def test_sasl_ssl_with_scram_maps_to_sasl_and_ssl_keys(pki):
    env = _env(pki, "SASL_SSL", ROTA_KAFKA_SSL_CERTFILE="", ROTA_KAFKA_SSL_KEYFILE="")
    assert client_config("k:1", KafkaSecurity.from_env(env)) == {
        "bootstrap.servers": "k:1",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "rota",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pki.ca),
    }


def test_protocol_and_mechanism_are_case_insensitive():
    security = KafkaSecurity.from_env(
        {
            "ROTA_KAFKA_SECURITY_PROTOCOL": " sasl_plaintext ",
            "ROTA_KAFKA_SASL_MECHANISM": "scram-sha-256",
            "ROTA_KAFKA_SASL_USERNAME": "rota",
            "ROTA_KAFKA_SASL_PASSWORD": PASSWORD,
        }
    )
    assert (security.protocol, security.sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_real_confluent_producer_accepts_the_configuration(pki, protocol):
    # librdkafka checks every key and loads the CA, certificate and key when a client
    # is constructed; nothing listens on port 1, and nothing is sent.
    config = client_config("127.0.0.1:1", KafkaSecurity.from_env(_env(pki, protocol)))
    producer = Producer({**config, "log_level": 0})
    producer.poll(0)


def test_clients_use_the_process_environment(monkeypatch, pki):
    for name, value in _env(pki, "SASL_SSL").items():
        monkeypatch.setenv(name, value)
    assert client_config("k:1")["security.protocol"] == "SASL_SSL"
    assert isinstance(faust_credentials(), faust.SASLCredentials)
    monkeypatch.setenv("ROTA_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    assert client_config("k:1") == {"bootstrap.servers": "k:1"}


# -- Faust and aiokafka ----------------------------------------------------------------


def test_faust_gets_sasl_credentials_over_tls_for_sasl_ssl(pki):
    security = KafkaSecurity.from_env(_env(pki, "SASL_SSL"))
    credentials = faust_credentials(security)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert (credentials.username, credentials.password) == ("rota", PASSWORD)
    assert _ca_names(credentials.ssl_context) == ["Rota Test CA"]
    assert PASSWORD not in repr(credentials)


def test_faust_gets_sasl_credentials_without_tls_for_sasl_plaintext(pki):
    security = KafkaSecurity.from_env(_env(pki, "SASL_PLAINTEXT"))
    credentials = faust_credentials(security)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT
    assert credentials.ssl_context is None


def test_faust_gets_ssl_credentials_for_ssl(pki):
    credentials = faust_credentials(KafkaSecurity.from_env(_env(pki, "SSL")))
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL
    assert _ca_names(credentials.context) == ["Rota Test CA"]


def test_the_ssl_context_verifies_the_broker_and_presents_the_client_certificate(pki):
    context = ssl_context(KafkaSecurity.from_env(_env(pki, "SSL")))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert _handshake(pki, context) == "rota-client"


def test_the_ssl_context_refuses_a_broker_its_ca_did_not_sign(pki, tmp_path):
    other = ec.generate_private_key(ec.SECP256R1())
    other_ca = _write_cert(tmp_path / "other.crt", _certificate("Other CA", other))
    env = _env(pki, "SSL", ROTA_KAFKA_SSL_CAFILE=str(other_ca))
    context = ssl_context(KafkaSecurity.from_env(env))
    assert context is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(pki, context)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_faust_app_and_aiokafka_accept_the_credentials(pki, protocol):
    credentials = faust_credentials(KafkaSecurity.from_env(_env(pki, protocol)))
    app = faust.App(
        f"rota-security-test-{protocol.lower()}",
        broker="kafka://127.0.0.1:1",
        broker_credentials=credentials,
    )
    assert app.conf.broker_credentials is credentials
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == protocol

    async def construct() -> None:
        # aiokafka checks the protocol, mechanism and context when a client is made.
        import aiokafka

        producer = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **auth)
        assert producer.client._security_protocol == protocol

    asyncio.run(construct())


def _ca_names(context: ssl.SSLContext | None) -> list[str]:
    assert context is not None
    return [
        value
        for cert in context.get_ca_certs()
        for rdn in cert["subject"]
        for key, value in rdn
        if key == "commonName"
    ]


def _handshake(pki: Pki, client: ssl.SSLContext) -> str:
    """Connect ``client`` to a TLS server for ``localhost`` that requires a client
    certificate signed by the test CA; return that certificate's common name."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    server.load_cert_chain(pki.server_cert, pki.server_key)
    server.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(5)
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert() or {}
                    seen.extend(
                        v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"
                    )
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                assert tls.recv(2) == b"ok"
        finally:
            thread.join(5)
    return seen[0]


# -- validation ------------------------------------------------------------------------

SASL = {"ROTA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ROTA_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "ROTA_KAFKA_SECURITY_PROTOCOL='TLS' is not one of "
            "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        (
            {**SASL, "ROTA_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "ROTA_KAFKA_SASL_MECHANISM='GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        (
            SASL,
            "ROTA_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs ROTA_KAFKA_SASL_MECHANISM "
            "(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and ROTA_KAFKA_SASL_USERNAME and "
            "ROTA_KAFKA_SASL_PASSWORD (or ROTA_KAFKA_SASL_PASSWORD_FILE)",
        ),
        (
            {
                "ROTA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "ROTA_KAFKA_SASL_USERNAME": "rota",
                "ROTA_KAFKA_SASL_PASSWORD": PASSWORD,
            },
            "ROTA_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs ROTA_KAFKA_SASL_MECHANISM "
            "(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
        ),
        (
            {**SASL, "ROTA_KAFKA_SASL_MECHANISM": "PLAIN", "ROTA_KAFKA_SASL_PASSWORD": "x"},
            "ROTA_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs ROTA_KAFKA_SASL_USERNAME",
        ),
        (
            {**SASL, "ROTA_KAFKA_SASL_MECHANISM": "PLAIN", "ROTA_KAFKA_SASL_USERNAME": "u"},
            "ROTA_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs ROTA_KAFKA_SASL_PASSWORD "
            "(or ROTA_KAFKA_SASL_PASSWORD_FILE)",
        ),
        (
            {
                "ROTA_KAFKA_SECURITY_PROTOCOL": "SSL",
                "ROTA_KAFKA_SSL_CAFILE": "/nonexistent/ca.crt",
            },
            "ROTA_KAFKA_SSL_CAFILE: /nonexistent/ca.crt does not exist",
        ),
    ],
    ids=[
        "unknown protocol",
        "unknown mechanism",
        "sasl without anything",
        "sasl without mechanism",
        "sasl without username",
        "sasl without password",
        "missing ca file",
    ],
)
def test_invalid_settings_are_refused_with_the_variable_named(env, message):
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        KafkaSecurity.from_env(env)


def test_a_client_certificate_needs_its_key_and_the_key_its_certificate(pki):
    with pytest.raises(
        SettingsError,
        match=r"^ROTA_KAFKA_SSL_CERTFILE is set but ROTA_KAFKA_SSL_KEYFILE is not: "
        r"mutual TLS needs both the client certificate and its private key$",
    ):
        KafkaSecurity.from_env(_env(pki, "SSL", ROTA_KAFKA_SSL_KEYFILE=""))
    with pytest.raises(
        SettingsError, match=r"^ROTA_KAFKA_SSL_KEYFILE is set but ROTA_KAFKA_SSL_CERTFILE is not"
    ):
        KafkaSecurity.from_env(_env(pki, "SASL_SSL", ROTA_KAFKA_SSL_CERTFILE=""))


@pytest.mark.parametrize("name", ["CAFILE", "CERTFILE", "KEYFILE"])
def test_every_tls_file_must_exist_and_be_a_file(pki, tmp_path, name):
    variable = f"ROTA_KAFKA_SSL_{name}"
    missing = tmp_path / "missing.pem"
    with pytest.raises(SettingsError, match=f"^{variable}: {re.escape(str(missing))} does not"):
        KafkaSecurity.from_env(_env(pki, "SSL", **{variable: str(missing)}))
    with pytest.raises(SettingsError, match=f"^{variable}: {re.escape(str(tmp_path))} is not a"):
        KafkaSecurity.from_env(_env(pki, "SASL_SSL", **{variable: str(tmp_path)}))


def test_a_file_that_is_not_pem_is_named_when_the_tls_context_is_built(pki, tmp_path):
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate\n")
    security = KafkaSecurity.from_env(_env(pki, "SSL", ROTA_KAFKA_SSL_CAFILE=str(garbage)))
    with pytest.raises(SettingsError, match=f"^ROTA_KAFKA_SSL_CAFILE: {re.escape(str(garbage))}"):
        ssl_context(security)
    mismatched = _env(pki, "SSL", ROTA_KAFKA_SSL_KEYFILE=str(pki.server_key))
    with pytest.raises(SettingsError, match=r"^ROTA_KAFKA_SSL_CERTFILE: .* matching the"):
        ssl_context(KafkaSecurity.from_env(mismatched))


def test_an_encrypted_key_is_refused_instead_of_prompting_for_its_password(pki):
    env = _env(pki, "SSL", ROTA_KAFKA_SSL_KEYFILE=str(pki.encrypted_client_key))
    with pytest.raises(SettingsError, match=r"^ROTA_KAFKA_SSL_KEYFILE: the key is encrypted"):
        ssl_context(KafkaSecurity.from_env(env))


def test_settings_stop_at_start_on_a_bad_security_setting():
    with pytest.raises(SettingsError, match="needs ROTA_KAFKA_SASL_MECHANISM"):
        Settings.from_env(SASL)


def test_the_cli_exits_2_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("ROTA_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("ROTA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ROTA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-1")
    assert cli.main(["forget", "c-1"]) == 2
    err = capsys.readouterr().err
    assert "configuration error: ROTA_KAFKA_SASL_MECHANISM='SCRAM-SHA-1' is not one of" in err


def test_a_secured_cluster_needs_its_bootstrap_address():
    # The brokers Rota starts itself are PLAINTEXT; fail before starting one.
    env = {"ROTA_KAFKA_SECURITY_PROTOCOL": "SSL", "ROTA_NO_DOCKER": "1"}
    with pytest.raises(SettingsError, match=r"^ROTA_KAFKA_SECURITY_PROTOCOL=SSL needs ROTA_KAF"):
        brokers.acquire(env)


# -- the password ----------------------------------------------------------------------


def test_the_password_can_come_from_a_mounted_secret_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text(f"{PASSWORD}\n")  # `echo` and most editors end the file with one
    env = {
        "ROTA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "ROTA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "ROTA_KAFKA_SASL_USERNAME": "rota",
        "ROTA_KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    assert Settings.from_env(env).kafka_security.sasl_password == PASSWORD
    assert client_config("k:1", KafkaSecurity.from_env(env))["sasl.password"] == PASSWORD
    # The same newline, from a Secret made with `kubectl create secret --from-file`:
    del env["ROTA_KAFKA_SASL_PASSWORD_FILE"]
    env["ROTA_KAFKA_SASL_PASSWORD"] = f"{PASSWORD}\n"
    assert KafkaSecurity.from_env(env).sasl_password == PASSWORD


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, {}, "^ROTA_KAFKA_SASL_PASSWORD_FILE: cannot read .*: No such file or directory$"),
        ("\n", {}, "^ROTA_KAFKA_SASL_PASSWORD_FILE: .* is empty$"),
        (
            PASSWORD,
            {"ROTA_KAFKA_SASL_PASSWORD": PASSWORD},
            "^set either ROTA_KAFKA_SASL_PASSWORD or ROTA_KAFKA_SASL_PASSWORD_FILE, not both$",
        ),
    ],
    ids=["missing", "empty", "both"],
)
def test_a_password_file_that_cannot_be_used_is_refused(tmp_path, content, extra, message):
    secret = tmp_path / "password"
    if content is not None:
        secret.write_text(content)
    env = {
        "ROTA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ROTA_KAFKA_SASL_MECHANISM": "PLAIN",
        "ROTA_KAFKA_SASL_USERNAME": "rota",
        "ROTA_KAFKA_SASL_PASSWORD_FILE": str(secret),
        **extra,
    }
    with pytest.raises(SettingsError, match=message):
        KafkaSecurity.from_env(env)


def test_the_password_is_never_shown_by_repr_str_or_logging(pki, caplog):
    env = _env(pki, "SASL_SSL")
    security = KafkaSecurity.from_env(env)
    settings = Settings.from_env(env)
    log = logging.getLogger("rota.test")
    with caplog.at_level(logging.DEBUG, logger="rota.test"):
        log.info("security %s %r", security, security)
        log.info("settings %s %r", settings, settings)
        log.info("settings", extra={"settings": settings})
    shown = [repr(security), str(security), repr(settings), str(settings), caplog.text]
    for text in shown:
        assert PASSWORD not in text
    assert "sasl_password='***'" in repr(security)
    assert "sasl_username='rota'" in repr(settings)


def test_the_cache_follows_the_environment(monkeypatch):
    monkeypatch.setenv("ROTA_KAFKA_SECURITY_PROTOCOL", "SSL")
    assert kafka_security.current().protocol == "SSL"
    monkeypatch.delenv("ROTA_KAFKA_SECURITY_PROTOCOL")
    assert kafka_security.current().protocol == "PLAINTEXT"
