"""SASL on the Kafka listener (SASL_PLAINTEXT here; SASL_SSL is the same state machine over TLS)
with confluent-kafka (librdkafka): SCRAM-SHA-256/512 and PLAIN against the SCRAM credentials
stored in the metadata quorum, wrong passwords and clients without SASL refused.

One single-node cluster: gRPC PLAINTEXT (its internal listener, where credentials are set) and
a Kafka listener KAFKA mapped to SASL_PLAINTEXT.
"""

from __future__ import annotations

import socket
import struct
import uuid

import pytest

from raftlog.cluster.local import LocalCluster
from tests.integration.conftest import free_port_block

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.slow
PASSWORD = "alice-secret"
ROOT_PASSWORD = "root-secret"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(2)
    cluster = LocalCluster(
        tmp_path_factory.mktemp("kafka-sasl"),
        nodes=1,
        base_port=base,
        metrics_base_port=0,
        kafka_base_port=base + 1,
        extra_config={
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,KAFKA:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            "min.insync.replicas": 1,
            "super.users": "User:root",  # administers credentials over the Kafka listener
        },
    )
    try:
        cluster.start()
        cluster.wait_for_brokers(1, timeout_s=90)
        with cluster.admin(timeout_ms=15000) as admin:
            admin.upsert_scram_credential("alice", "SCRAM-SHA-256", PASSWORD)
            admin.upsert_scram_credential("alice", "SCRAM-SHA-512", PASSWORD, iterations=8192)
            admin.upsert_scram_credential("root", "SCRAM-SHA-256", ROOT_PASSWORD)
            admin.create_topic("sasl-topic", partitions=1, replication_factor=1)
        yield cluster
    finally:
        cluster.stop()


def client_config(cluster, mechanism: str, password: str = PASSWORD, user: str = "alice") -> dict:
    return {
        "bootstrap.servers": cluster.kafka_bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_authenticated_user_produces_and_consumes(cluster, mechanism):
    value = f"{mechanism}-{uuid.uuid4()}".encode()
    producer = confluent_kafka.Producer({**client_config(cluster, mechanism), "message.timeout.ms": 20000})
    delivered = []
    producer.produce("sasl-topic", value, on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0 and delivered == [None]
    consumer = confluent_kafka.Consumer(
        {**client_config(cluster, mechanism), "group.id": f"g-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    try:
        consumer.assign([confluent_kafka.TopicPartition("sasl-topic", 0, 0)])
        seen = []
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append(message.value())
            if value in seen:
                break
        assert value in seen
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_wrong_password_is_refused(cluster, mechanism):
    errors = []
    producer = confluent_kafka.Producer(
        {
            **client_config(cluster, mechanism, password="wrong"),
            "error_cb": errors.append,
            "message.timeout.ms": 3000,
        }
    )
    producer.produce("sasl-topic", b"never")
    producer.flush(10)
    assert any(e.code() == confluent_kafka.KafkaError._AUTHENTICATION for e in errors), errors
    assert any("invalid credentials" in e.str().lower() or "authentication failed" in e.str().lower() for e in errors)


def test_requests_before_authentication_close_the_connection(cluster):
    """A Metadata request without SASL first: the listener answers nothing and closes."""
    host, port = cluster.kafka_bootstrap_servers.split(":")
    client_id = b"raw"
    body = struct.pack(">i", 0)  # Metadata v1 asking for no topics
    header = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        assert sock.recv(4) == b""  # closed, no answer


def test_scram_credentials_are_administered_with_a_kafka_admin_client(cluster):
    """DescribeUserScramCredentials / AlterUserScramCredentials from librdkafka's AdminClient, over
    the same credential records as `raftlog users scram`: a user set here logs in, and the gRPC
    Admin sees it; a user who is not a super user is refused."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    root = AdminClient(client_config(cluster, "SCRAM-SHA-256", ROOT_PASSWORD, user="root"))
    described = root.describe_user_scram_credentials().result(30)
    assert {m.mechanism: m.iterations for m in described["alice"].scram_credential_infos} == {
        ScramMechanism.SCRAM_SHA_256: 4096,
        ScramMechanism.SCRAM_SHA_512: 8192,
    }
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 10000)
    futures = root.alter_user_scram_credentials(
        [
            UserScramCredentialUpsertion("bob", info, b"bob-secret"),
            UserScramCredentialDeletion("nobody", ScramMechanism.SCRAM_SHA_256),
        ]
    )
    assert futures["bob"].result(30) is None
    with pytest.raises(confluent_kafka.KafkaException) as refused:
        futures["nobody"].result(30)
    assert refused.value.args[0].code() == confluent_kafka.KafkaError.RESOURCE_NOT_FOUND

    # bob logs in with the password the client salted; the gRPC Admin reads the same records.
    bob = AdminClient(client_config(cluster, "SCRAM-SHA-512", "bob-secret", user="bob"))
    assert bob.list_topics(timeout=30).topics is not None
    with cluster.admin(timeout_ms=15000) as admin:
        assert admin.describe_user_scram_credentials(["bob"]) == {
            "bob": [{"mechanism": "SCRAM-SHA-512", "iterations": 10000}]
        }
    by_user = root.describe_user_scram_credentials(["bob", "carol"])
    assert [(m.mechanism, m.iterations) for m in by_user["bob"].result(30).scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_512, 10000)
    ]
    with pytest.raises(confluent_kafka.KafkaException) as missing:
        by_user["carol"].result(30)
    assert missing.value.args[0].code() == confluent_kafka.KafkaError.RESOURCE_NOT_FOUND

    # alice is no super user (and the Kafka listener is not internal): refused, nothing changes.
    alice = AdminClient(client_config(cluster, "SCRAM-SHA-256"))
    with pytest.raises(confluent_kafka.KafkaException) as denied:
        alice.alter_user_scram_credentials([UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512)])[
            "bob"
        ].result(30)
    assert denied.value.args[0].code() == confluent_kafka.KafkaError.CLUSTER_AUTHORIZATION_FAILED
    with pytest.raises(confluent_kafka.KafkaException) as denied_describe:
        alice.describe_user_scram_credentials(["bob"])["bob"].result(30)
    assert denied_describe.value.args[0].code() == confluent_kafka.KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # (Not describe_user_scram_credentials() of every user: confluent-kafka 2.16's process crashes
    # on its request-level refusal; tests/kafka/test_scram_handlers.py checks that answer.)

    assert (
        root.alter_user_scram_credentials([UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512)])[
            "bob"
        ].result(30)
        is None
    )
    assert "bob" not in root.describe_user_scram_credentials().result(30)
