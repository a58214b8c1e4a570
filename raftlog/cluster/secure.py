"""The TLS side of a local cluster (``raftlog cluster up --secure``): certificates, listeners and
the admin user.

Each node gets three listeners: ``INTERNAL`` (SSL) on its cluster port (Raft, controller and
replica traffic, mutual TLS with node certificates; it is the node's voter address), ``CLIENT``
(SSL) on the cluster port + ``CLIENT_PORT_OFFSET`` (client APIs only; a client certificate is
required, ``ssl.client.auth=required``, so every caller has a principal) and ``SASL`` (SASL_SSL)
on the cluster port + ``SASL_PORT_OFFSET`` (client APIs for users with SCRAM credentials).
``<data-dir>/tls/`` holds the CA and the certificates (raftlog/cluster/certificates.py),
``<data-dir>/client.properties`` what a client needs to connect with the admin certificate, and
``<data-dir>/admin-scram.properties`` (mode 0600) the admin user's SCRAM login: the same
``User:admin``, a super user, with a random password made on the first run.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from raftlog.cluster.certificates import LocalCA
from raftlog.tls import client_kwargs, read_properties

CLIENT_PORT_OFFSET = 50  # below the metrics ports (cluster port + 100)
SASL_PORT_OFFSET = 60  # CLIENT_PORT_OFFSET + at most 9 nodes < this
ADMIN_NAME = "admin"
ADMIN_MECHANISM = "SCRAM-SHA-256"


class SecureLayout:
    def __init__(self, data_dir: Path, node_ids: list[int]):
        self.tls_dir = data_dir / "tls"
        self.properties_path = data_dir / "client.properties"
        self.ca = LocalCA(self.tls_dir)
        self.ca.ensure()
        for node_id in node_ids:
            if not self.ca.node(node_id).certificate.exists():
                self.ca.issue_node(node_id)
        self.admin_certificate, self.admin_key = self.tls_dir / f"{ADMIN_NAME}.pem", self.tls_dir / f"{ADMIN_NAME}.key"
        if not self.admin_certificate.exists():  # a re-run keeps the certificates it made
            self.ca.issue(ADMIN_NAME, ADMIN_NAME)
        self.properties_path.write_text(
            "# written by raftlog cluster up --secure: raftlog <command> --command-config "
            f"{self.properties_path}\n" + "".join(f"{key}={value}\n" for key, value in self.client_properties().items())
        )
        self.scram_properties_path = data_dir / "admin-scram.properties"
        if not self.scram_properties_path.exists():  # a re-run keeps the password it made
            self._write_scram_properties(secrets.token_urlsafe(18))
        self.admin_password = read_properties(self.scram_properties_path)["sasl.password"]

    def _write_scram_properties(self, password: str) -> None:
        lines = [
            "# written by raftlog cluster up --secure: the admin user's SCRAM login (SASL listeners);",
            f"# raftlog <command> --bootstrap-server <SASL listeners> --command-config {self.scram_properties_path}",
            "security.protocol=SASL_SSL",
            f"ssl.truststore.location={self.ca.ca.certificate}",
            f"sasl.mechanism={ADMIN_MECHANISM}",
            f"sasl.username={ADMIN_NAME}",
            f"sasl.password={password}",
        ]
        fd = os.open(self.scram_properties_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")

    def scram_settings(self) -> dict[str, str | None]:
        """The admin user's SCRAM keyword arguments for Admin, Producer and Consumer (SASL listeners)."""
        return client_kwargs(read_properties(self.scram_properties_path))

    def client_properties(self) -> dict[str, str]:
        return {
            "security.protocol": "SSL",
            "ssl.truststore.location": str(self.ca.ca.certificate),
            "ssl.certificate.location": str(self.admin_certificate),
            "ssl.key.location": str(self.admin_key),
        }

    def client_settings(self) -> dict[str, str]:
        """The admin's keyword arguments for Admin, Producer and Consumer."""
        return {
            "security_protocol": "SSL",
            "ssl_cafile": str(self.ca.ca.certificate),
            "ssl_certfile": str(self.admin_certificate),
            "ssl_keyfile": str(self.admin_key),
        }

    def node_config(self, node_id: int, host: str, port: int) -> dict[str, object]:
        issued = self.ca.node(node_id)
        return {
            "listeners": f"INTERNAL://{host}:{port},CLIENT://{host}:{port + CLIENT_PORT_OFFSET},"
            f"SASL://{host}:{port + SASL_PORT_OFFSET}",
            "listener.security.protocol.map": "INTERNAL:SSL,CLIENT:SSL,SASL:SASL_SSL",
            "super.users": f"User:{ADMIN_NAME}",
            "inter.broker.listener.name": "INTERNAL",
            "ssl.certificate.location": str(issued.certificate),
            "ssl.key.location": str(issued.key),
            "ssl.truststore.location": str(self.ca.ca.certificate),
            "ssl.client.auth": "required",
        }
