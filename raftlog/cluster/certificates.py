"""A local certificate authority for development clusters (``raftlog cluster up --secure``).

Writes, in one directory: ``ca.pem``/``ca.key`` (the CA), ``node-<id>.pem``/``node-<id>.key`` for
each node (CN ``node-<id>``, SAN URI ``raftlog:node:<id>``, DNS ``localhost``, IP ``127.0.0.1``;
usable as server and as client certificate, for mutual TLS between nodes; with more IP or DNS
SANs where the nodes are reached at other addresses than loopback: the chaos suite's network
namespaces and containers) and ``admin.pem``/``admin.key`` (CN ``admin``, a client certificate). EC P-256 keys, SHA-256
signatures. Keys are written mode 0600. Not for production: the CA key sits next to the
certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftlog.tls import NODE_URI_PREFIX

VALID_DAYS = 365
ORGANIZATION = "raftlog development cluster"


@dataclass(frozen=True)
class Issued:
    certificate: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.pem"
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Written beside and renamed over, so a node reloading its files never sees half of one.
    for path, data, mode in (
        (key_path, key_bytes, 0o600),
        (cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return Issued(cert_path, key_path)


class LocalCA:
    def __init__(self, directory: Path):
        self.directory = directory
        self.ca = Issued(directory / "ca.pem", directory / "ca.key")

    def ensure(self) -> None:
        """Creates the CA unless it exists (a re-run keeps the certificates the nodes trust)."""
        if self.ca.certificate.exists() and self.ca.key.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("raftlog development CA"))
            .issuer_name(_name("raftlog development CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write(self.directory, "ca", cert, key)

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca.certificate.read_bytes())
        key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), f"{self.ca.key} is not an EC key"
        return cert, key

    def issue(self, stem: str, common_name: str, node_id: int | None = None, addresses: Sequence[str] = ()) -> Issued:
        """A certificate for a node (``node_id`` given: SAN URI, server and client use; addresses:
        IP addresses or host names it is reached at besides 127.0.0.1 and localhost, as its peers and
        clients verify them) or a client."""
        ca_cert, ca_key = self._load()
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if node_id is not None:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(f"{NODE_URI_PREFIX}{node_id}"),
                        *(
                            _alternative_name(address)
                            for address in dict.fromkeys(["localhost", "127.0.0.1", *addresses])
                        ),
                    ]
                ),
                critical=False,
            )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return _write(self.directory, stem, builder.sign(ca_key, hashes.SHA256()), key)

    def issue_node(self, node_id: int, addresses: Sequence[str] = ()) -> Issued:
        return self.issue(f"node-{node_id}", f"node-{node_id}", node_id, addresses)

    def node(self, node_id: int) -> Issued:
        return Issued(self.directory / f"node-{node_id}.pem", self.directory / f"node-{node_id}.key")


def _alternative_name(address: str) -> x509.GeneralName:
    """An IP address SAN for an address, a DNS name SAN for a host name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address)


def serial_number(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number
