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
        },
    )
    try:
        cluster.start()
        cluster.wait_for_brokers(1, timeout_s=90)
        with cluster.admin(timeout_ms=15000) as admin:
            admin.upsert_scram_credential("alice", "SCRAM-SHA-256", PASSWORD)
            admin.upsert_scram_credential("alice", "SCRAM-SHA-512", PASSWORD, iterations=8192)
            admin.create_topic("sasl-topic", partitions=1, replication_factor=1)
        yield cluster
    finally:
        cluster.stop()


def client_config(cluster, mechanism: str, password: str = PASSWORD) -> dict:
    return {
        "bootstrap.servers": cluster.kafka_bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
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
