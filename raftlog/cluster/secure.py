"""The TLS side of a local cluster (``raftlog cluster up --secure``): certificates and listeners.

Each node gets two listeners, both SSL: ``INTERNAL`` on its cluster port (Raft, controller and
replica traffic, mutual TLS with node certificates; it is the node's voter address) and
``CLIENT`` on the cluster port + ``CLIENT_PORT_OFFSET`` (client APIs only; a client certificate is
required, ``ssl.client.auth=required``, so every caller has a principal). ACLs are on
(``authorizer.class.name``) with ``User:admin`` the one super user. ``<data-dir>/tls/`` holds
the CA and the certificates (raftlog/cluster/certificates.py), ``<data-dir>/client.properties``
what a client needs (``--command-config``: the CA and the admin certificate). With Kafka protocol
listeners, each is SSL too (``KAFKA:SSL``, the same certificates and ``ssl.client.auth``), and
``<data-dir>/kafka-client.properties`` holds the same files under librdkafka's names (kcat ``-F``).
"""

from __future__ import annotations

from pathlib import Path

from raftlog.cluster.certificates import LocalCA

CLIENT_PORT_OFFSET = 50  # below the metrics ports (cluster port + 100)
ADMIN_NAME = "admin"
AUTHORIZER_CLASS_NAME = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


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
        self.kafka_properties_path = data_dir / "kafka-client.properties"
        self.kafka_properties_path.write_text(
            "# written by raftlog cluster up --secure, for Kafka clients of the Kafka listeners "
            f"(librdkafka's names): kcat -F {self.kafka_properties_path} -b ...\n"
            + "".join(f"{key}={value}\n" for key, value in self.kafka_client_settings().items())
        )

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
        """The admin's settings for a librdkafka client (confluent-kafka, kcat -X / -F)."""
        return {
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.ca.ca.certificate),
            "ssl.certificate.location": str(self.admin_certificate),
            "ssl.key.location": str(self.admin_key),
        }

    def node_config(self, node_id: int, host: str, port: int, kafka_listener: str | None = None) -> dict[str, object]:
        """kafka_listener: the name of the node's Kafka protocol listener, made SSL too (None: it has none)."""
        issued = self.ca.node(node_id)
        kafka = f",{kafka_listener}:SSL" if kafka_listener else ""
        return {
            "listeners": f"INTERNAL://{host}:{port},CLIENT://{host}:{port + CLIENT_PORT_OFFSET}",
            "listener.security.protocol.map": f"INTERNAL:SSL,CLIENT:SSL{kafka}",
            "inter.broker.listener.name": "INTERNAL",
            "ssl.certificate.location": str(issued.certificate),
            "ssl.key.location": str(issued.key),
            "ssl.truststore.location": str(self.ca.ca.certificate),
            "ssl.client.auth": "required",
            # ACLs on, with the admin certificate's principal a super user (nodes may do ClusterAction
            # by their certificates): other principals may do only what bindings allow.
            "authorizer.class.name": AUTHORIZER_CLASS_NAME,
            "super.users": f"User:{ADMIN_NAME}",
        }
