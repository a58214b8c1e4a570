"""A secure local cluster (``cluster up --secure``): TLS on every listener, mutual TLS between nodes
whose certificates name their node ids, internal services only on the INTERNAL listeners.

The forged requests below are ones issue 12 found working against a plaintext cluster: a Raft
append "from the leader", a heartbeat for another broker, a replica fetch for another replica.
Each is made with a valid certificate (node 2's, or the admin's) that does not name the node the
request claims to come from.
"""

from __future__ import annotations

import os
import signal
import ssl

import grpc
import pytest

from raftlog.client.consumer import Consumer
from raftlog.client.producer import Producer
from raftlog.cluster.certificates import serial_number
from raftlog.cluster.local import LocalCluster
from raftlog.cluster.secure import CLIENT_PORT_OFFSET, SASL_PORT_OFFSET
from raftlog.errors import REASON_METADATA_KEY, Errors, RaftlogError
from raftlog.raft.messages import MsgType
from raftlog.tls import ClientSecurity, TlsFiles
from raftlog.v1 import (
    controller_pb2,
    controller_pb2_grpc,
    raft_pb2,
    raft_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)
from tests.integration.conftest import free_port_block, wait_until

pytestmark = pytest.mark.slow
CALL_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(SASL_PORT_OFFSET + 3)  # CLIENT at +50.., SASL at +60..
    cluster = LocalCluster(tmp_path_factory.mktemp("secure"), nodes=3, base_port=base, metrics_base_port=0, secure=True)
    try:
        cluster.start()
        cluster.wait_for_leader(timeout_s=60)
        cluster.wait_for_brokers(3, timeout_s=60)
        yield cluster
    finally:
        cluster.stop()


def internal(cluster: LocalCluster, node_id: int) -> str:
    return cluster.specs[node_id].address


def client_listener(cluster: LocalCluster, node_id: int) -> str:
    spec = cluster.specs[node_id]
    return f"{spec.host}:{spec.port + CLIENT_PORT_OFFSET}"


def channel_as(cluster: LocalCluster, address: str, who: str) -> grpc.Channel:
    """A channel to `address` with the certificate of `who` (node-2, admin, ...)."""
    assert cluster.secure is not None
    tls = cluster.secure.tls_dir
    security = ClientSecurity("SSL", TlsFiles(tls / f"{who}.pem", tls / f"{who}.key", tls / "ca.pem"))
    return grpc.secure_channel(address, security.channel_credentials())


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def assert_cluster_authorization_failed(error: grpc.RpcError) -> None:
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
    assert dict(error.trailing_metadata() or ())[REASON_METADATA_KEY] == Errors.CLUSTER_AUTHORIZATION_FAILED.name


def test_secure_cluster_replicates_acks_all_and_serves_a_client_with_the_ca(cluster):
    with cluster.admin() as admin:
        admin.create_topic("secure", partitions=2, replication_factor=3)
        wait_until(
            lambda: all(len(p["isr"]) == 3 for p in admin.describe_topics(["secure"])[0]["partitions"]),
            30,
            "full ISR of secure",
        )
    producer = Producer(cluster.bootstrap_servers, acks="all", **cluster.client_settings)
    try:
        futures = [producer.send("secure", f"v{i}".encode(), key=f"k{i}".encode()) for i in range(50)]
        producer.flush()
        assert all(f.result(CALL_TIMEOUT_S).offset >= 0 for f in futures)
    finally:
        producer.close()
    consumer = Consumer(cluster.bootstrap_servers, group_id="secure-readers", **cluster.client_settings)
    try:
        consumer.subscribe(["secure"])
        seen: set[bytes] = set()
        wait_until(lambda: seen.update(r.value for r in consumer.poll(500)) or len(seen) == 50, 30, "50 records")
        assert seen == {f"v{i}".encode() for i in range(50)}
    finally:
        consumer.close()


def test_a_plaintext_client_gets_a_clear_error(cluster):
    from raftlog.client.admin import Admin

    with Admin(cluster.bootstrap_servers, timeout_ms=10_000) as admin, pytest.raises(RaftlogError) as info:
        admin.list_topics()
    assert info.value.error is Errors.SSL_AUTHENTICATION_FAILED
    assert "speaks TLS; set security.protocol=SSL" in info.value.message


def test_node_2_cannot_heartbeat_register_or_fetch_as_another_node(cluster):
    leader = cluster.wait_for_leader()
    impersonated = next(i for i in cluster.specs if i not in (2, leader)) if leader == 2 else leader
    with channel_as(cluster, internal(cluster, leader), "node-2") as channel:
        controller = controller_pb2_grpc.ControllerServiceStub(channel)
        heartbeat = controller_pb2.BrokerHeartbeatRequest(cluster_id=cluster.cluster_id, broker_id=impersonated)
        assert_cluster_authorization_failed(
            refused(lambda: controller.BrokerHeartbeat(heartbeat, timeout=CALL_TIMEOUT_S))
        )
        register = controller_pb2.RegisterBrokerRequest(cluster_id=cluster.cluster_id, broker_id=7)
        assert_cluster_authorization_failed(
            refused(lambda: controller.RegisterBroker(register, timeout=CALL_TIMEOUT_S))
        )
        fetch = replication_pb2.ReplicaFetchRequest(cluster_id=cluster.cluster_id, replica_id=impersonated)
        replication = replication_pb2_grpc.ReplicationServiceStub(channel)
        assert_cluster_authorization_failed(refused(lambda: replication.ReplicaFetch(fetch, timeout=CALL_TIMEOUT_S)))
    # The real node 2 still heartbeats as itself: no broker was fenced by the forgeries.
    with cluster.admin() as admin:
        assert all(not b["fenced"] for b in admin.describe_cluster()["brokers"])


def test_a_raft_append_from_a_node_that_did_not_send_it_is_refused(cluster):
    leader = cluster.wait_for_leader()
    target = next(i for i in cluster.specs if i not in (2, leader))
    forged_from = leader if leader != 2 else next(i for i in cluster.specs if i not in (2, target))
    # A term far ahead: had it reached the core, the target would have adopted it (and lost its leader).
    message = raft_pb2.RaftMessage(type=MsgType.HEARTBEAT, to=target, term=10_000)
    setattr(message, "from", forged_from)
    batch = raft_pb2.RaftMessageBatch(cluster_id=cluster.cluster_id, from_node=forged_from, messages=[message])
    with channel_as(cluster, internal(cluster, target), "node-2") as channel:
        stub = raft_pb2_grpc.RaftServiceStub(channel)
        assert_cluster_authorization_failed(refused(lambda: stub.Send(iter([batch]), timeout=CALL_TIMEOUT_S)))
    with cluster.admin() as admin:
        assert admin.describe_quorum()["leader_epoch"] < 10_000


def test_the_admin_certificate_is_no_node(cluster):
    leader = cluster.wait_for_leader()
    with channel_as(cluster, internal(cluster, leader), "admin") as channel:
        heartbeat = controller_pb2.BrokerHeartbeatRequest(cluster_id=cluster.cluster_id, broker_id=leader)
        stub = controller_pb2_grpc.ControllerServiceStub(channel)
        assert_cluster_authorization_failed(refused(lambda: stub.BrokerHeartbeat(heartbeat, timeout=CALL_TIMEOUT_S)))


def test_client_listeners_do_not_serve_internal_services(cluster):
    with channel_as(cluster, client_listener(cluster, 1), "node-2") as channel:
        calls = [
            lambda: raft_pb2_grpc.RaftServiceStub(channel).Send(iter([]), timeout=CALL_TIMEOUT_S),
            lambda: replication_pb2_grpc.ReplicationServiceStub(channel).ReplicaFetch(
                replication_pb2.ReplicaFetchRequest(cluster_id=cluster.cluster_id, replica_id=2),
                timeout=CALL_TIMEOUT_S,
            ),
            lambda: controller_pb2_grpc.ControllerServiceStub(channel).BrokerHeartbeat(
                controller_pb2.BrokerHeartbeatRequest(cluster_id=cluster.cluster_id, broker_id=2),
                timeout=CALL_TIMEOUT_S,
            ),
        ]
        for call in calls:
            assert refused(call).code() == grpc.StatusCode.UNIMPLEMENTED


def test_server_reflection_is_off_unless_enabled(cluster):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    request = reflection_pb2.ServerReflectionRequest(list_services="")
    for address in (internal(cluster, 1), client_listener(cluster, 1)):
        with channel_as(cluster, address, "admin") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            error = refused(lambda: list(stub.ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT_S)))
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_node_serves_a_replaced_certificate_to_new_connections_without_a_restart(cluster):
    assert cluster.secure is not None
    spec = cluster.specs[3]
    served = lambda: serial_number(  # noqa: E731
        ssl.get_server_certificate((spec.host, spec.port + CLIENT_PORT_OFFSET), timeout=5).encode()
    )
    before = served()
    renewed = cluster.secure.ca.issue("node-3-renewed", "node-3", 3)
    current = cluster.secure.ca.node(3)
    os.replace(renewed.key, current.key)
    os.replace(renewed.certificate, current.certificate)
    after = served()
    assert after == serial_number(current.certificate.read_bytes()) and after != before
    assert cluster.is_running(3)
    # SIGHUP reloads too (and does not end the node, as SIGHUP's default would).
    cluster.signal_node(3, signal.SIGHUP)
    wait_until(lambda: "reloading TLS certificates" in spec.log_path.read_text(), 10, "SIGHUP logged")
    assert served() == after and cluster.is_running(3)
    # Its peers accept the renewed certificate too (same CA): node 3 is still a live broker.
    with cluster.admin() as admin:
        admin.create_topic("after-renewal", partitions=1, replication_factor=3)
        wait_until(
            lambda: len(admin.describe_topics(["after-renewal"])[0]["partitions"][0]["isr"]) == 3, 30, "full ISR"
        )
