"""ACLs on a secure cluster (`cluster up --secure`: authorization on, User:admin the super user):
users with client certificates (User:alice, User:bob) may do only what bindings allow, the
bindings live in the metadata quorum (they survive kill -9 of the controller and a restart of
every node), and `raftlog acls` / `topics list` behave as kafka-acls and kafka-topics do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from raftlog.authorizer.acls import AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType
from raftlog.client import TopicPartition
from raftlog.client.admin import Admin
from raftlog.client.consumer import Consumer
from raftlog.client.producer import Producer
from raftlog.cluster.local import LocalCluster
from raftlog.cluster.secure import SASL_PORT_OFFSET
from raftlog.errors import Errors, RaftlogError
from tests.integration.conftest import free_port_block, wait_until

pytestmark = pytest.mark.slow
TIMEOUT_S = 30


def user_settings(cluster: LocalCluster, name: str) -> dict[str, str]:
    """The user's certificate from `raftlog cluster certificate NAME`, as Producer/Consumer/Admin settings."""
    made = subprocess.run(
        [sys.executable, "-m", "cli.main", "cluster", "certificate", name, "--data-dir", str(cluster.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0 and f"--command-config {cluster.data_dir / (name + '.properties')}" in made.stdout
    return {
        "security_protocol": "SSL",
        "ssl_cafile": str(cluster.secure.ca.ca.certificate),
        "ssl_certfile": str(cluster.secure.tls_dir / f"{name}.pem"),
        "ssl_keyfile": str(cluster.secure.tls_dir / f"{name}.key"),
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(SASL_PORT_OFFSET + 3)  # CLIENT at +50.., SASL at +60..
    cluster = LocalCluster(tmp_path_factory.mktemp("acls"), nodes=3, base_port=base, metrics_base_port=0, secure=True)
    try:
        cluster.start()
        cluster.wait_for_leader(timeout_s=60)
        cluster.wait_for_brokers(3, timeout_s=60)
        cluster.users = {name: user_settings(cluster, name) for name in ("alice", "bob")}
        with cluster.admin(timeout_ms=20_000) as admin:
            for topic in ("orders", "payments", "logs-app"):
                admin.create_topic(topic, partitions=1, replication_factor=3)
        producer = Producer(cluster.bootstrap_servers, acks="all", **cluster.client_settings)
        try:
            futures = [producer.send("orders", f"o{i}".encode()) for i in range(5)]
            producer.flush()
            assert all(f.result(TIMEOUT_S).offset >= 0 for f in futures)
        finally:
            producer.close()
        yield cluster
    finally:
        cluster.stop()


def allow(principal, kind, name, op, pattern=PatternType.LITERAL, permission=Permission.ALLOW) -> AclBinding:
    return AclBinding(kind, name, pattern, principal, "*", op, permission)


def admin_as(cluster, user: str | None = None) -> Admin:
    settings = cluster.client_settings if user is None else cluster.users[user]
    return Admin(cluster.bootstrap_servers, timeout_ms=20_000, **settings)


def consume(cluster, user: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(cluster.bootstrap_servers, **cluster.users[user])
    try:
        consumer.assign([TopicPartition(topic, 0)])
        seen: list[bytes] = []
        wait_until(lambda: seen.extend(r.value for r in consumer.poll(500)) or len(seen) >= count, TIMEOUT_S, "records")
        return seen
    finally:
        consumer.close()


def produce(cluster, user: str, topic: str, **settings) -> int:
    producer = Producer(cluster.bootstrap_servers, acks="all", **{**cluster.users[user], **settings})
    try:
        future = producer.send(topic, b"x")
        producer.flush()
        return future.result(TIMEOUT_S).offset
    finally:
        producer.close()


def produce_error(cluster, user: str, topic: str, **settings) -> Errors:
    with pytest.raises(RaftlogError) as info:
        produce(cluster, user, topic, **settings)
    return info.value.error


def cli(cluster, user: str | None, *args: str) -> subprocess.CompletedProcess:
    properties = cluster.secure.properties_path if user is None else cluster.data_dir / f"{user}.properties"
    command = [sys.executable, "-m", "cli.main", *args]
    command += ["--bootstrap-server", cluster.bootstrap_servers, "--command-config", str(properties)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ)


def test_read_on_a_topic_consumes_but_does_not_produce_and_commits_need_the_group(cluster):
    added = cli(
        cluster, None, "acls", "add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", "orders"
    )
    assert added.returncode == 0, added.stderr
    assert consume(cluster, "alice", "orders", 5)[:5] == [f"o{i}".encode() for i in range(5)]
    assert produce_error(cluster, "alice", "orders", enable_idempotence=False) is Errors.TOPIC_AUTHORIZATION_FAILED
    # idempotent: InitProducerId needs IdempotentWrite on the cluster or Write on some topic
    assert produce_error(cluster, "alice", "orders") is Errors.CLUSTER_AUTHORIZATION_FAILED
    consumer = Consumer(cluster.bootstrap_servers, group_id="alice-group", **cluster.users["alice"])
    try:
        with pytest.raises(RaftlogError) as info:
            consumer.commit({TopicPartition("orders", 0): 3})
        assert info.value.error is Errors.GROUP_AUTHORIZATION_FAILED
        with admin_as(cluster) as admin:
            admin.create_acls([allow("User:alice", ResourceType.GROUP, "alice-group", Operation.READ)])
        consumer.commit({TopicPartition("orders", 0): 3})
        assert consumer.committed([TopicPartition("orders", 0)]) == {TopicPartition("orders", 0): 3}
    finally:
        consumer.close()
    refused = "".join(spec.log_path.read_text() for spec in cluster.specs.values())
    assert "audit: refused principal=User:alice operation=Write resource=Topic:orders" in refused


def test_prefixed_acls_match_and_a_deny_beats_an_allow(cluster):
    with admin_as(cluster) as admin:
        admin.create_acls([allow("User:bob", ResourceType.TOPIC, "logs-", Operation.WRITE, PatternType.PREFIXED)])
        assert produce(cluster, "bob", "logs-app") >= 0  # idempotent: Write on a topic is enough
        assert produce_error(cluster, "bob", "payments", enable_idempotence=False) is Errors.TOPIC_AUTHORIZATION_FAILED
        admin.create_acls(
            [allow("User:bob", ResourceType.TOPIC, "logs-app", Operation.WRITE, permission=Permission.DENY)]
        )
    assert produce_error(cluster, "bob", "logs-app", enable_idempotence=False) is Errors.TOPIC_AUTHORIZATION_FAILED


def test_topics_list_shows_only_what_the_principal_may_describe_and_acls_need_alter(cluster):
    listed = cli(cluster, "alice", "topics", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["orders"]
    everything = cli(cluster, None, "topics", "list").stdout.split()  # the super user
    assert {"logs-app", "orders", "payments"} <= set(everything)
    refused = cli(cluster, "alice", "acls", "add", "--allow-principal", "User:alice", "--topic", "payments")
    assert refused.returncode == 1 and "CLUSTER_AUTHORIZATION_FAILED" in refused.stderr
    listing = cli(cluster, None, "acls", "list", "--topic", "orders", "--output", "json")
    bindings = json.loads(listing.stdout)["bindings"]
    assert [(b["principal"], b["operation"], b["permission"]) for b in bindings] == [("User:alice", "Read", "ALLOW")]


def test_acls_survive_kill_9_of_the_controller_and_a_restart_of_every_node(cluster):
    with admin_as(cluster) as admin:
        admin.create_acls([allow("User:bob", ResourceType.TOPIC, "payments", Operation.DESCRIBE)])
        before = set(admin.describe_acls())
    assert len(before) >= 4
    controller = cluster.wait_for_leader(timeout_s=TIMEOUT_S)
    cluster.kill_node(controller)
    cluster.start_node(controller)
    cluster.wait_for_leader(timeout_s=60)
    cluster.wait_for_brokers(3, timeout_s=60)
    for node_id in list(cluster.specs):
        cluster.stop_node(node_id)
    for node_id in list(cluster.specs):
        cluster.start_node(node_id)
    cluster.wait_for_leader(timeout_s=60)
    cluster.wait_for_brokers(3, timeout_s=60)
    with admin_as(cluster) as admin:
        assert set(admin.describe_acls()) == before
        assert admin.delete_acls([AclFilter(ResourceType.TOPIC, "payments", principal="User:bob")]) == [
            allow("User:bob", ResourceType.TOPIC, "payments", Operation.DESCRIBE)
        ]
    assert consume(cluster, "alice", "orders", 5)[:1] == [b"o0"]
    assert produce_error(cluster, "alice", "orders", enable_idempotence=False) is Errors.TOPIC_AUTHORIZATION_FAILED


def test_the_super_user_may_do_everything(cluster):
    with admin_as(cluster) as admin:
        admin.create_acls([allow("User:*", ResourceType.TOPIC, "*", Operation.ALL, permission=Permission.DENY)])
        try:
            admin.create_topic("admins-only", partitions=1, replication_factor=3)
            producer = Producer(cluster.bootstrap_servers, acks="all", **cluster.client_settings)
            try:
                assert producer.send("admins-only", b"a").result(TIMEOUT_S).offset == 0
            finally:
                producer.close()
            admin.alter_configs("topics", "admins-only", {"retention.ms": "60000"})
            admin.delete_topic("admins-only")
            assert produce_error(cluster, "bob", "logs-app") is not None  # everyone else: denied
        finally:
            admin.delete_acls([AclFilter(ResourceType.TOPIC, "*", PatternType.LITERAL, permission=Permission.DENY)])


def test_the_consumer_shortcut_grants_what_a_group_consumer_needs(cluster):
    added = cli(
        cluster,
        None,
        "acls",
        "add",
        "--allow-principal",
        "User:bob",
        "--consumer",
        "--topic",
        "orders",
        "--group",
        "bobs",
    )
    assert added.returncode == 0, added.stderr
    assert [line.split()[-2] for line in added.stdout.splitlines()[2:]] == ["Read", "Describe", "Read"]
    consumer = Consumer(cluster.bootstrap_servers, group_id="bobs", enable_auto_commit=False, **cluster.users["bob"])
    try:
        consumer.subscribe(["orders"])
        seen: list[bytes] = []
        wait_until(lambda: seen.extend(r.value for r in consumer.poll(500)) or len(seen) >= 5, TIMEOUT_S, "records")
        consumer.commit()
        assert consumer.committed([TopicPartition("orders", 0)])[TopicPartition("orders", 0)] >= 5
    finally:
        consumer.close()


def test_subscribing_to_a_topic_the_principal_may_not_describe_is_refused(cluster):
    with admin_as(cluster) as admin:
        admin.create_acls([allow("User:bob", ResourceType.GROUP, "bobs-sub", Operation.READ)])
    consumer = Consumer(cluster.bootstrap_servers, group_id="bobs-sub", **cluster.users["bob"])
    try:
        consumer.subscribe(["payments"])
        with pytest.raises(RaftlogError) as info:
            for _ in range(TIMEOUT_S * 5):  # polls of 200 ms: the heartbeat's refusal reaches the next one
                consumer.poll(200)
        assert info.value.error is Errors.TOPIC_AUTHORIZATION_FAILED
    finally:
        consumer.close()


def test_a_regex_subscription_is_assigned_only_topics_the_principal_may_describe(cluster):
    """A pattern matching regex-ok and regex-hidden, with Read (so Describe) on regex-ok alone: the
    consumer is assigned regex-ok and consumes it; regex-hidden is not matched (neither assigned nor
    refused at fetch time); once Describe on regex-hidden is granted the next heartbeats add it."""
    with admin_as(cluster) as admin:
        for topic in ("regex-ok", "regex-hidden"):
            admin.create_topic(topic, partitions=1, replication_factor=3)
        admin.create_acls(
            [
                allow("User:alice", ResourceType.GROUP, "alice-regex", Operation.READ),
                allow("User:alice", ResourceType.TOPIC, "regex-ok", Operation.READ),
            ]
        )
    producer = Producer(cluster.bootstrap_servers, acks="all", **cluster.client_settings)
    try:
        futures = [producer.send(topic, topic.encode()) for topic in ("regex-ok", "regex-hidden")]
        producer.flush()
        assert all(f.result(TIMEOUT_S).offset >= 0 for f in futures)
    finally:
        producer.close()
    consumer = Consumer(
        cluster.bootstrap_servers, group_id="alice-regex", auto_offset_reset="earliest", **cluster.users["alice"]
    )
    try:
        consumer.subscribe(pattern="regex-.*")
        seen: list[bytes] = []
        wait_until(
            lambda: seen.extend(r.value for r in consumer.poll(200)) or b"regex-ok" in seen, TIMEOUT_S, "regex-ok"
        )
        assert consumer.assignment() == {TopicPartition("regex-ok", 0)}
        with admin_as(cluster) as admin:
            admin.create_acls([allow("User:alice", ResourceType.TOPIC, "regex-hidden", Operation.READ)])
        wait_until(
            lambda: seen.extend(r.value for r in consumer.poll(200)) or b"regex-hidden" in seen,
            TIMEOUT_S,
            "regex-hidden",
        )
        assert consumer.assignment() == {TopicPartition("regex-ok", 0), TopicPartition("regex-hidden", 0)}
    finally:
        consumer.close()


def test_a_producer_only_user_describes_its_topic_and_runs_perf_produce(cluster):
    """`acls add --producer --idempotent` (Write, Describe, Create on the topic, IdempotentWrite on
    the cluster; no DescribeConfigs): Admin.describe_topics, `topics describe` (configs shown as
    unavailable) and `perf produce` (servers' CPU unknown) work for that user."""
    cluster.users["dave"] = user_settings(cluster, "dave")
    with admin_as(cluster) as admin:
        admin.create_topic("dave-topic", partitions=1, replication_factor=3, config={"retention.ms": "3600000"})
    added = cli(
        cluster,
        None,
        "acls",
        "add",
        "--allow-principal",
        "User:dave",
        "--producer",
        "--idempotent",
        "--topic",
        "dave-topic",
    )
    assert added.returncode == 0, added.stderr
    with admin_as(cluster, "dave") as admin:
        [described] = admin.describe_topics(["dave-topic"])
        assert described["partition_count"] == 1 and described["configs"] is None
        [with_configs] = admin.describe_topics(["dave-topic"], include_configs=True)
        assert with_configs["configs"] is None  # DescribeConfigs refused: the rest is still there
    with admin_as(cluster) as admin:  # the super user sees the configs
        [full] = admin.describe_topics(["dave-topic"], include_configs=True)
        assert full["configs"] == {"retention.ms": "3600000"}
    shown = cli(cluster, "dave", "topics", "describe", "--topic", "dave-topic")
    assert shown.returncode == 0, shown.stderr
    assert "Configs: (unavailable: DescribeConfigs not allowed)" in shown.stdout
    perf = cli(
        cluster, "dave", "perf", "produce", "--topic", "dave-topic", "--num-records", "200", "--record-size", "10"
    )
    assert perf.returncode == 0, perf.stderr
    assert "200 records sent" in perf.stdout and "servers unknown" in perf.stdout


def test_acls_add_reports_created_and_already_existing_bindings_as_the_controller_answered(cluster):
    args = ["acls", "add", "--allow-principal", "User:erin", "--topic", "orders", "--output", "json"]
    first = cli(cluster, None, *args, "--operation", "Read")
    assert first.returncode == 0, first.stderr
    assert [b["operation"] for b in json.loads(first.stdout)["bindings"]] == ["Read"]
    second = cli(cluster, None, *args, "--operation", "Read", "--operation", "Write")
    assert second.returncode == 0, second.stderr
    answer = json.loads(second.stdout)
    assert [b["operation"] for b in answer["bindings"]] == ["Write"]
    assert [b["operation"] for b in answer["existing"]] == ["Read"]
    text = cli(cluster, None, *args[:-2], "--operation", "Read", "--operation", "Write")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Added ACLs: none\nAlready existing (unchanged):\n")
    assert "Write" in text.stdout and "Read" in text.stdout
    # The audit log has each binding added once: by the call that created it.
    audit = "".join(spec.log_path.read_text() for spec in cluster.specs.values())
    added = [line for line in audit.splitlines() if "operation=acl-added" in line and "User:erin" in line]
    assert len(added) == 2, added
