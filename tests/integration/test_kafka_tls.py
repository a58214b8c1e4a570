"""The Kafka listener of a secure cluster (``cluster up --secure``): SASL_SSL Kafka listeners (the
nodes' certificates, then a SCRAM login), used by confluent-kafka (security.protocol=SASL_SSL,
ssl.ca.location and the admin user's SCRAM-SHA-256 login) and kcat (-F with the cluster's
kafka-client.properties); a plaintext client and one without credentials get an error, not a hang;
a SCRAM-SHA-512 user with a wrong password is refused; ACLs (on in the secure cluster) refuse a
produce by a user with only Read. The records are the same ones raftlog's gRPC client reads over its
own TLS listener."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from raftlog.authorizer.acls import AclBinding, Operation, PatternType, Permission, ResourceType
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.cluster.local import LocalCluster
from raftlog.cluster.secure import SASL_PORT_OFFSET
from tests.integration.conftest import free_port_block, wait_until
from tests.integration.test_kafka_listener import request_frame

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(SASL_PORT_OFFSET + 6)  # Kafka on base+SASL_PORT_OFFSET+3..+5
    cluster = LocalCluster(
        tmp_path_factory.mktemp("kafka-tls"),
        nodes=3,
        base_port=base,
        metrics_base_port=0,
        secure=True,
        kafka_base_port=base + SASL_PORT_OFFSET + 3,
    )
    try:
        cluster.start()
        cluster.wait_for_brokers(3, timeout_s=90)  # the bound of a loaded machine, not a speed claim
        cluster.ensure_admin_user()  # as `cluster up --secure` does: the login kafka-client.properties holds
        with cluster.admin(timeout_ms=15000) as admin:
            admin.upsert_scram_credential("reader", "SCRAM-SHA-512", READER_PASSWORD)
        yield cluster
    finally:
        cluster.stop()


READER_PASSWORD = "reader-secret"


def settings(cluster: LocalCluster, **more) -> dict:
    return {"bootstrap.servers": cluster.kafka_bootstrap_servers, **cluster.kafka_client_settings, **more}


def test_confluent_kafka_and_kcat_over_tls_produce_and_consume_the_log_grpc_reads(cluster):
    admin = AdminClient(settings(cluster))
    admin.create_topics([NewTopic("tls-topic", 1, 3)])["tls-topic"].result(timeout=30)
    wait_until(
        lambda: admin.list_topics("tls-topic", timeout=5).topics["tls-topic"].partitions[0].leader >= 0, 30, "a leader"
    )
    producer = confluent_kafka.Producer(settings(cluster, **{"enable.idempotence": True, "acks": "all"}))
    for i in range(100):
        producer.produce("tls-topic", key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(60) == 0

    consumer = confluent_kafka.Consumer(
        settings(cluster, **{"group.id": "tls-readers", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    )
    values = []
    try:
        consumer.assign([confluent_kafka.TopicPartition("tls-topic", 0, confluent_kafka.OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while len(values) < 100 and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(100, 1.0) if m.error() is None]
    finally:
        consumer.close()
    assert values == [b"v%d" % i for i in range(100)]

    grpc_consumer = Consumer(cluster.bootstrap_servers, auto_offset_reset="earliest", **cluster.client_settings)
    try:
        grpc_consumer.assign([TopicPartition("tls-topic", 0)])
        seen: list = []
        wait_until(lambda: seen.extend(r.value for r in grpc_consumer.poll(500)) or len(seen) >= 100, 30, "gRPC")
        assert seen == values
    finally:
        grpc_consumer.close()

    if shutil.which("kcat") is not None:
        assert cluster.secure is not None
        properties = str(cluster.secure.kafka_properties_path)
        bootstrap = cluster.kafka_bootstrap_servers.split(",")[0]
        listing = subprocess.run(
            ["kcat", "-F", properties, "-b", bootstrap, "-L", "-t", "tls-topic"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr
        assert 'topic "tls-topic" with 1 partitions' in listing.stdout
        read = subprocess.run(
            ["kcat", "-F", properties, "-b", bootstrap, "-C", "-t", "tls-topic", "-o", "beginning", "-e", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert read.returncode == 0, read.stderr
        assert read.stdout.split() == [f"v{i}" for i in range(100)]


def test_a_plaintext_client_or_one_without_credentials_gets_an_error_not_a_hang(cluster):
    port = cluster.specs[1].kafka_port
    # A plaintext Kafka request on the TLS port: the connection is closed.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_frame(18, 3, 1, b"\x00\x00\x00"))
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
    plaintext = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap_servers})
    with pytest.raises(confluent_kafka.KafkaException):
        plaintext.list_topics(timeout=5)
    # TLS with the CA but no SASL login, on a SASL_SSL listener.
    assert cluster.secure is not None
    anonymous = AdminClient(
        {
            "bootstrap.servers": cluster.kafka_bootstrap_servers,
            "security.protocol": "SSL",
            "ssl.ca.location": str(cluster.secure.ca.ca.certificate),
        }
    )
    with pytest.raises(confluent_kafka.KafkaException):
        anonymous.list_topics(timeout=5)


def reader_settings(cluster: LocalCluster, password: str, **more) -> dict:
    assert cluster.secure is not None
    return {
        "bootstrap.servers": cluster.kafka_bootstrap_servers,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(cluster.secure.ca.ca.certificate),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "reader",
        "sasl.password": password,
        **more,
    }


def test_a_scram_sha_512_login_with_a_wrong_password_is_refused_over_sasl_ssl(cluster):
    errors: list = []
    reports: list = []
    producer = confluent_kafka.Producer(
        reader_settings(cluster, "wrong-secret", error_cb=errors.append, **{"message.timeout.ms": 3000})
    )
    producer.produce("tls-topic", b"never", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(15)
    assert len(reports) == 1 and reports[0] is not None  # not delivered
    assert any(e.code() == confluent_kafka.KafkaError._AUTHENTICATION for e in errors), errors
    # The right password on the same listener logs in (Metadata answers; the topic list needs no ACL).
    AdminClient(reader_settings(cluster, READER_PASSWORD)).list_topics(timeout=30)


def test_an_acl_with_only_read_refuses_the_users_kafka_produce(cluster):
    """User:reader may Read topic acl-topic (so Describe too) and nothing else: its produce over the
    Kafka listener is refused with TOPIC_AUTHORIZATION_FAILED, the refusal is in the audit log, and
    the admin's produce to the same topic goes through."""
    with cluster.admin(timeout_ms=15000) as admin:
        admin.create_topic("acl-topic", partitions=1, replication_factor=3)
        admin.create_acls(
            [
                AclBinding(
                    ResourceType.TOPIC,
                    "acl-topic",
                    PatternType.LITERAL,
                    "User:reader",
                    "*",
                    Operation.READ,
                    Permission.ALLOW,
                )
            ]
        )
    reports: list = []
    producer = confluent_kafka.Producer(
        reader_settings(cluster, READER_PASSWORD, **{"enable.idempotence": False, "message.timeout.ms": 20000})
    )
    producer.produce("acl-topic", b"refused", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(30)
    assert [e.code() if e else None for e in reports] == [confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED]
    audit = "".join(spec.log_path.read_text() for spec in cluster.specs.values())
    assert "audit: refused principal=User:reader operation=Write resource=Topic:acl-topic" in audit
    admin_producer = confluent_kafka.Producer(settings(cluster, **{"acks": "all"}))
    delivered: list = []
    admin_producer.produce("acl-topic", b"allowed", on_delivery=lambda err, msg: delivered.append(err))
    admin_producer.flush(30)
    assert delivered == [None]
