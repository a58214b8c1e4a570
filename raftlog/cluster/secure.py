"""The TLS side of a local cluster (``raftlog cluster up --secure``): certificates, listeners and
the admin user.

Each node gets three gRPC listeners: ``INTERNAL`` (SSL) on its cluster port (Raft, controller
and replica traffic, mutual TLS with node certificates; it is the node's voter address), ``CLIENT``
(SSL) on the cluster port + ``CLIENT_PORT_OFFSET`` (client APIs only; a client certificate is
required, ``ssl.client.auth=required``, so every caller has a principal) and ``SASL`` (SASL_SSL)
on the cluster port + ``SASL_PORT_OFFSET`` (client APIs for users with SCRAM credentials). With
Kafka protocol listeners, each is SASL_SSL (``KAFKA:SASL_SSL``: TLS with the nodes' certificates,
then a SCRAM or PLAIN login; users are added with ``raftlog users scram set``, no certificate to
issue). ACLs are on (``authorizer.class.name``) with ``User:admin`` the one super user, by its
certificate or by its SCRAM login. ``<data-dir>/tls/`` holds the CA and the certificates
(raftlog/cluster/certificates.py), ``<data-dir>/client.properties`` what a client needs to
connect with the admin certificate (``--command-config``), ``<data-dir>/admin-scram.properties``
(mode 0600) the admin user's SCRAM login with a random password made on the first run, and
``<data-dir>/kafka-client.properties`` (mode 0600) that login under librdkafka's names (kcat
``-F``, confluent-kafka).

``client_bindings`` are the fewest ACL bindings a producer and consumer of one topic (and one group)
need; ``LocalCluster.add_client_user`` issues a user's certificate and grants them (the chaos
suite's workload and the secure variants of the replication tests run as such a user).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from raftlog.authorizer.acls import CLUSTER_NAME, WILDCARD, AclBinding, Operation, PatternType, Permission, ResourceType
from raftlog.cluster.certificates import LocalCA
from raftlog.tls import client_kwargs, read_properties

CLIENT_PORT_OFFSET = 50  # below the metrics ports (cluster port + 100)
SASL_PORT_OFFSET = 60  # CLIENT_PORT_OFFSET + at most 9 nodes < this
ADMIN_NAME = "admin"
AUTHORIZER_CLASS_NAME = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ADMIN_MECHANISM = "SCRAM-SHA-256"


class SecureLayout:
    def __init__(self, data_dir: Path, node_ids: list[int], hosts: Mapping[int, str] | None = None):
        """hosts: node id -> the IP address or host name it is reached at, named in its certificate
        beside 127.0.0.1 and localhost."""
        self.tls_dir = data_dir / "tls"
        self.properties_path = data_dir / "client.properties"
        self.ca = LocalCA(self.tls_dir)
        self.ca.ensure()
        for node_id in node_ids:
            if not self.ca.node(node_id).certificate.exists():
                self.ca.issue_node(node_id, [host] if (host := (hosts or {}).get(node_id)) else [])
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
        self.kafka_properties_path = data_dir / "kafka-client.properties"
        _write_private(
            self.kafka_properties_path,
            [
                "# written by raftlog cluster up --secure: the admin user's SCRAM login on the Kafka "
                f"listeners (librdkafka's names): kcat -F {self.kafka_properties_path} -b ...",
                *(f"{key}={value}" for key, value in self.kafka_client_settings().items()),
            ],
        )

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
        _write_private(self.scram_properties_path, lines)

    def scram_settings(self) -> dict[str, str | None]:
        """The admin user's SCRAM keyword arguments for Admin, Producer and Consumer (SASL listeners)."""
        return client_kwargs(read_properties(self.scram_properties_path))

    @staticmethod
    def issue_user(data_dir: Path, name: str) -> Path:
        """A client certificate for ``User:<name>`` from the cluster's CA, and
        ``<data-dir>/<name>.properties`` for ``--command-config``; returns that file's path."""
        tls_dir = data_dir / "tls"
        ca = LocalCA(tls_dir)
        if not ca.ca.certificate.exists():
            raise FileNotFoundError(
                f"{tls_dir} has no CA: run `raftlog cluster up --secure --data-dir {data_dir}` first"
            )
        issued = ca.issue(name, name)
        path = data_dir / f"{name}.properties"
        path.write_text(
            f"# User:{name}, written by raftlog cluster certificate\n"
            "security.protocol=SSL\n"
            f"ssl.truststore.location={ca.ca.certificate}\n"
            f"ssl.certificate.location={issued.certificate}\n"
            f"ssl.key.location={issued.key}\n"
        )
        return path

    @staticmethod
    def user_settings(data_dir: Path, name: str) -> dict[str, str | None]:
        """A new client certificate for ``User:<name>`` (``issue_user``), as keyword arguments for
        Admin, Producer and Consumer."""
        return client_kwargs(read_properties(SecureLayout.issue_user(data_dir, name)))

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

    def kafka_client_settings(self) -> dict[str, str]:
        """The admin user's SCRAM login for a librdkafka client of the SASL_SSL Kafka listeners
        (confluent-kafka, kcat -X / -F)."""
        return {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.ca.ca.certificate),
            "sasl.mechanisms": ADMIN_MECHANISM,
            "sasl.username": ADMIN_NAME,
            "sasl.password": self.admin_password,
        }

    def node_config(self, node_id: int, host: str, port: int, kafka_listener: str | None = None) -> dict[str, object]:
        """kafka_listener: the name of the node's Kafka protocol listener, made SASL_SSL (None: it has none)."""
        issued = self.ca.node(node_id)
        kafka = f",{kafka_listener}:SASL_SSL" if kafka_listener else ""
        return {
            "listeners": f"INTERNAL://{host}:{port},CLIENT://{host}:{port + CLIENT_PORT_OFFSET},"
            f"SASL://{host}:{port + SASL_PORT_OFFSET}",
            "listener.security.protocol.map": f"INTERNAL:SSL,CLIENT:SSL,SASL:SASL_SSL{kafka}",
            "inter.broker.listener.name": "INTERNAL",
            **tls_and_acl_config(issued.certificate, issued.key, self.ca.ca.certificate),
        }


def tls_and_acl_config(certificate: Path, key: Path, truststore: Path) -> dict[str, object]:
    """A secure node's TLS files (as the node sees them: a container mounts them elsewhere), client
    certificates required on its SSL listeners, and ACLs on with ``User:admin`` the super user."""
    return {
        "ssl.certificate.location": str(certificate),
        "ssl.key.location": str(key),
        "ssl.truststore.location": str(truststore),
        "ssl.client.auth": "required",
        # ACLs on, with the admin certificate's principal a super user (nodes may do ClusterAction
        # by their certificates): other principals may do only what bindings allow.
        "authorizer.class.name": AUTHORIZER_CLASS_NAME,
        "super.users": f"User:{ADMIN_NAME}",
    }


def client_bindings(principal: str, topic: str, group: str | None = None, idempotent: bool = False) -> list[AclBinding]:
    """The fewest bindings a client that produces to and consumes `topic` needs: Write and Read on
    it (each implies Describe: metadata, offsets), Read on its consumer group (joining, committing)
    and, for an idempotent producer, IdempotentWrite on the cluster (InitProducerId; Write on the
    topic would do as well since Kafka 3, as it does here, but kafka-acls --idempotent grants it)."""
    literal = PatternType.LITERAL
    grants = [(ResourceType.TOPIC, topic, Operation.WRITE), (ResourceType.TOPIC, topic, Operation.READ)]
    if group is not None:
        grants.append((ResourceType.GROUP, group, Operation.READ))
    if idempotent:
        grants.append((ResourceType.CLUSTER, CLUSTER_NAME, Operation.IDEMPOTENT_WRITE))
    return [AclBinding(kind, name, literal, principal, WILDCARD, op, Permission.ALLOW) for kind, name, op in grants]


def _write_private(path: Path, lines: list[str]) -> None:
    """Writes a file only its owner may read (it holds a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
