"""Users with SCRAM credentials on a secure cluster (``cluster up --secure``): the admin user it
makes, a user who logs in over SASL_SSL and produces, refused logins, and credentials that survive
a kill -9 of the active controller and a restart of every node (with metadata snapshots taken
every few entries, so a restart restores them from a snapshot too).

One three-node secure cluster serves the module; the tests run in order and build on each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import grpc
import pytest

from raftlog.authorizer.acls import AclBinding, Operation, PatternType, Permission, ResourceType
from raftlog.client.admin import Admin
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.cluster.local import LocalCluster
from raftlog.cluster.secure import SASL_PORT_OFFSET
from raftlog.errors import REASON_METADATA_KEY, Errors, RaftlogError
from raftlog.v1 import broker_pb2, broker_pb2_grpc
from tests.integration.conftest import free_port_block, wait_until

pytestmark = pytest.mark.slow
ALICE = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice", "sasl_plain_password": "alice-secret"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(SASL_PORT_OFFSET + 3)
    cluster = LocalCluster(
        tmp_path_factory.mktemp("scram"),
        nodes=3,
        base_port=base,
        metrics_base_port=0,
        secure=True,
        extra_config={"metadata.snapshot.interval.records": 5},
    )
    try:
        cluster.start()
        cluster.wait_for_leader(timeout_s=60)
        cluster.wait_for_brokers(3, timeout_s=60)
        cluster.ensure_admin_user()
        yield cluster
    finally:
        cluster.stop()


def sasl_address(cluster: LocalCluster, node_id: int) -> str:
    spec = cluster.specs[node_id]
    return f"{spec.host}:{spec.port + SASL_PORT_OFFSET}"


def user_settings(cluster: LocalCluster, **sasl) -> dict:
    assert cluster.secure is not None
    return {"security_protocol": "SASL_SSL", "ssl_cafile": str(cluster.secure.ca.ca.certificate), **sasl}


def as_admin(cluster: LocalCluster, node_ids=None) -> Admin:
    """The admin user over SASL_SSL (its SCRAM login from admin-scram.properties)."""
    assert cluster.secure is not None
    servers = ",".join(sasl_address(cluster, i) for i in node_ids or cluster.specs)
    return Admin(servers, timeout_ms=15000, **cluster.secure.scram_settings())


def test_admin_user_sets_a_user_and_describe_shows_no_secret(cluster):
    with as_admin(cluster) as admin:
        admin.upsert_scram_credential("alice", "SCRAM-SHA-512", ALICE["sasl_plain_password"], iterations=8192)
        assert admin.describe_user_scram_credentials(["alice"]) == {
            "alice": [{"mechanism": "SCRAM-SHA-512", "iterations": 8192}]
        }
        with pytest.raises(RaftlogError) as info:
            admin.describe_user_scram_credentials(["nobody"])
        assert info.value.error is Errors.RESOURCE_NOT_FOUND

    def cli(*args: str, stdin: str = "") -> str:
        assert cluster.secure is not None
        connect = [
            "--bootstrap-server",
            sasl_address(cluster, 1),
            "--command-config",
            str(cluster.secure.scram_properties_path),
        ]
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "users", "scram", *args, *connect],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    cli("set", "--user", "dave", "--mechanism", "SCRAM-SHA-256", "--password-stdin", stdin="dave-secret\n")
    # Another process, so no read-your-writes: node 1 may apply the change a moment after it committed.
    for _ in range(20):
        out = cli("describe", "--output", "json")
        described = json.loads(out)
        if "dave" in described:
            break
    assert described["alice"] == [{"mechanism": "SCRAM-SHA-512", "iterations": 8192}]
    assert described["admin"] == described["dave"] == [{"mechanism": "SCRAM-SHA-256", "iterations": 4096}]
    assert cluster.secure is not None
    assert "alice-secret" not in out and "dave-secret" not in out and cluster.secure.admin_password not in out
    cli("delete", "--user", "dave", "--mechanism", "SCRAM-SHA-256")
    with as_admin(cluster, [1]) as admin:  # node 1 applies the deletion soon after the controller committed it
        wait_until(lambda: "dave" not in admin.describe_user_scram_credentials(), 10, "dave deleted")


def test_user_produces_and_consumes_after_login(cluster):
    servers = ",".join(sasl_address(cluster, i) for i in cluster.specs)
    with as_admin(cluster) as admin:
        admin.create_topic("scram-topic", partitions=1, replication_factor=3)
        # ACLs are on in the secure cluster: alice (not a super user) may write and read this topic only.
        admin.create_acls(
            [
                AclBinding(
                    ResourceType.TOPIC, "scram-topic", PatternType.LITERAL, "User:alice", "*", op, Permission.ALLOW
                )
                for op in (Operation.WRITE, Operation.READ)
            ]
        )
    value = uuid.uuid4().bytes
    with Producer(servers, acks="all", **user_settings(cluster, **ALICE)) as producer:
        metadata = producer.send("scram-topic", value=value).result(timeout=30)
    consumer = Consumer(servers, **user_settings(cluster, **ALICE))
    try:
        consumer.assign([TopicPartition("scram-topic", 0)])
        consumer.seek(TopicPartition("scram-topic", 0), metadata.offset)
        records = wait_until(lambda: consumer.poll(timeout_ms=500), 30, "alice's record")
        assert records[0].value == value
    finally:
        consumer.close()


def test_wrong_password_and_no_credentials_are_refused(cluster):
    wrong = user_settings(cluster, **{**ALICE, "sasl_plain_password": "not-it"})
    with Admin(sasl_address(cluster, 1), timeout_ms=5000, **wrong) as admin, pytest.raises(RaftlogError) as info:
        admin.list_topics()
    assert info.value.error is Errors.SASL_AUTHENTICATION_FAILED and "invalid credentials" in info.value.message
    assert cluster.secure is not None
    tls_only = {"security_protocol": "SSL", "ssl_cafile": str(cluster.secure.ca.ca.certificate)}
    with Admin(sasl_address(cluster, 2), timeout_ms=5000, **tls_only) as admin, pytest.raises(RaftlogError) as info:
        admin.list_topics()
    assert info.value.error is Errors.SASL_AUTHENTICATION_FAILED and "needs SASL authentication" in info.value.message
    # A user may log in but not change credentials (that needs Alter on the cluster).
    with Admin(sasl_address(cluster, 3), timeout_ms=5000, **user_settings(cluster, **ALICE)) as admin:
        with pytest.raises(RaftlogError) as info:
            admin.upsert_scram_credential("alice", "SCRAM-SHA-256", "another")
        assert info.value.error is Errors.CLUSTER_AUTHORIZATION_FAILED


def test_a_changed_credential_makes_clients_log_in_again(cluster):
    with Admin(sasl_address(cluster, 2), timeout_ms=10000, **user_settings(cluster, **ALICE)) as alice:
        alice.list_topics()
        login = alice._connection.security.login
        assert login is not None and login.logins == 1
        with as_admin(cluster) as admin:  # the same password, a new salt: every token of alice's is void
            admin.upsert_scram_credential("alice", "SCRAM-SHA-512", ALICE["sasl_plain_password"], iterations=8192)
        # Node 2 may apply the change a moment later: then the old token still works there, or a new
        # login there gets one of the old credential and logs in once more; either way a login follows.
        wait_until(lambda: alice.list_topics() is not None and login.logins >= 2, 30, "alice's second login")


def test_a_producer_stream_outlives_no_credential_change(cluster):
    """Produce goes on one long-lived stream (client/pipelined.py), opened with alice's token: the
    broker checks that token for every request on it, so after her credential changes the next
    send is refused on the old stream, and the producer logs in again and delivers it anyway."""
    servers = ",".join(sasl_address(cluster, i) for i in cluster.specs)
    with as_admin(cluster) as admin:
        admin.create_topic("scram-stream", partitions=1, replication_factor=3)
        admin.create_acls(
            [
                AclBinding(
                    ResourceType.TOPIC, "scram-stream", PatternType.LITERAL, "User:alice", "*", op, Permission.ALLOW
                )
                for op in (Operation.WRITE, Operation.DESCRIBE)
            ]
        )
    with Producer(servers, acks="all", **user_settings(cluster, **ALICE)) as producer:
        first = producer.send("scram-stream", value=b"before").result(timeout=30)
        login = producer._security.login
        assert login is not None
        logins_before = login.logins
        with as_admin(cluster) as admin:  # a new salt: every token of alice's is void
            admin.upsert_scram_credential("alice", "SCRAM-SHA-512", ALICE["sasl_plain_password"], iterations=8193)
        # The leader may apply the change a moment later: until then the old token still works.
        offsets = []
        for attempt in range(200):
            offsets.append(producer.send("scram-stream", value=b"after %d" % attempt).result(timeout=60).offset)
            if login.logins > logins_before:
                break
            time.sleep(0.05)
        assert login.logins > logins_before, "the voided token was never refused on the open stream"
        assert offsets == list(range(first.offset + 1, first.offset + 1 + len(offsets))), offsets


def test_forged_or_stale_session_tokens_are_refused(cluster):
    assert cluster.secure is not None
    with as_admin(cluster) as admin:
        admin.upsert_scram_credential("bob", "SCRAM-SHA-256", "bob-secret")
    bob = Admin(
        sasl_address(cluster, 1),
        timeout_ms=5000,
        **user_settings(cluster, sasl_plain_username="bob", sasl_plain_password="bob-secret"),
    )
    try:
        bob.list_topics()  # logged in
        login = bob._connection.security.login
        assert login is not None and login.principal == "User:bob"
        token = login.current()
        assert token is not None
        credentials = grpc.ssl_channel_credentials(cluster.secure.ca.ca.certificate.read_bytes())
        with grpc.secure_channel(sasl_address(cluster, 2), credentials) as channel:  # good on another node too
            stub = broker_pb2_grpc.BrokerServiceStub(channel)
            stub.Metadata(broker_pb2.MetadataRequest(), metadata=(("raftlog-sasl-token", token),), timeout=10)
            forged = token.replace(".Ym9i.", ".YWRtaW4.")  # claims to be admin
            with pytest.raises(grpc.RpcError) as info:
                stub.Metadata(broker_pb2.MetadataRequest(), metadata=(("raftlog-sasl-token", forged),), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert dict(info.value.trailing_metadata())[REASON_METADATA_KEY] == "SASL_AUTHENTICATION_FAILED"
            with as_admin(cluster) as admin:
                admin.delete_scram_credential("bob", "SCRAM-SHA-256")
            # Every node has applied the deletion before the admin's next read; the token dies with it.
            with as_admin(cluster, [2]) as node_2:
                wait_until(lambda: "bob" not in node_2.describe_user_scram_credentials(), 10, "bob gone on node 2")
            with pytest.raises(grpc.RpcError) as info:
                stub.Metadata(broker_pb2.MetadataRequest(), metadata=(("raftlog-sasl-token", token),), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        bob.close()


def alice_can_log_in(cluster: LocalCluster, node_id: int) -> bool:
    with Admin(sasl_address(cluster, node_id), timeout_ms=10000, **user_settings(cluster, **ALICE)) as admin:
        return "scram-topic" in admin.list_topics()


def test_credentials_survive_kill_of_the_controller_and_a_full_restart(cluster):
    controller = cluster.wait_for_leader(timeout_s=30)
    cluster.kill_node(controller)
    others = [i for i in cluster.specs if i != controller]
    cluster.wait_for_leader(timeout_s=60, node_ids=others, exclude=controller)
    for node_id in others:
        assert alice_can_log_in(cluster, node_id)
    with as_admin(cluster, others) as admin:  # a change through the new controller
        admin.upsert_scram_credential("carol", "SCRAM-SHA-256", "carol-secret")
    cluster.start_node(controller)
    wait_until(lambda: alice_can_log_in(cluster, controller), 60, "the killed node serving logins again")
    cluster.stop()
    cluster.start()
    cluster.wait_for_leader(timeout_s=60)
    cluster.wait_for_brokers(3, timeout_s=60)
    for node_id in cluster.specs:
        assert wait_until(lambda: alice_can_log_in(cluster, node_id), 30, f"alice logging in on node {node_id}")
        with as_admin(cluster, [node_id]) as admin:
            wait_until(
                lambda: set(admin.describe_user_scram_credentials()) == {"admin", "alice", "carol"},
                30,
                f"every credential on node {node_id}",
            )
