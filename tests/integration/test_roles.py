"""Dedicated controllers and broker-only nodes (process.roles): 3 controllers, 3 brokers, one cluster
for the module. Brokers follow the metadata log as Raft observers; partitions live only on them;
kill -9 of the active controller and of a broker under acks=all load loses nothing; controllers
are added and removed (KIP-853) under load, the active one included."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaos.checker import check
from chaos.workload import Workload, read_topic
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.cluster.local import LocalCluster
from tests.integration.conftest import describe_partition, free_port_block, wait_until
from tests.integration.test_data_plane import FAST_ISR

pytestmark = pytest.mark.slow

CONTROLLERS = [1, 2, 3]
BROKERS = [4, 5, 6]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(8)  # 6 nodes, and room for a controller added later
    local = LocalCluster(
        tmp_path_factory.mktemp("roles"),
        nodes=6,
        controllers=3,
        base_port=base,
        metrics_base_port=0,
        extra_config=FAST_ISR,
    )
    try:
        local.start()
        local.wait_for_leader(timeout_s=60)
        local.wait_for_brokers(3, timeout_s=60)
        yield local
    finally:
        local.stop()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=60)


def test_the_quorum_has_the_controllers_as_voters_and_the_brokers_as_observers(cluster):
    assert cluster.controller_ids == CONTROLLERS and cluster.broker_ids == BROKERS
    with cluster.admin() as admin:
        brokers = wait_until(
            lambda: (
                admin.describe_quorum() if sorted(admin.describe_quorum()["current_observers"]) == BROKERS else None
            ),
            30,
            "every broker to be an observer",
        )
        assert sorted(brokers["current_voters"]) == CONTROLLERS
        rows = {row["node_id"]: row for row in brokers["replication"]}
        assert {rows[i]["status"] for i in BROKERS} == {"Observer"}
        assert sorted(b["id"] for b in admin.describe_cluster()["brokers"]) == BROKERS, "controllers never register"
    described = cli("cluster", "describe", "--bootstrap-server", cluster.specs[1].address)
    assert described.returncode == 0, described.stderr
    assert "CurrentVoters: [1, 2, 3]" in described.stdout and "CurrentObservers: [4, 5, 6]" in described.stdout
    replication = cli("quorum", "describe", "--replication", "--bootstrap-server", cluster.specs[4].address)
    assert replication.returncode == 0, replication.stderr
    assert sum(" Observer" in line for line in replication.stdout.splitlines()) == 3


def test_topics_are_placed_only_on_brokers_and_a_client_bootstrapped_at_a_controller_is_sent_there(cluster):
    with cluster.admin([1]) as admin:
        admin.create_topic("placed", partitions=12, replication_factor=3)
        for partition in admin.describe_topics(["placed"])[0]["partitions"]:
            assert set(partition["replicas"]) == set(BROKERS), partition
    controller = cluster.specs[2].address  # a controller-only node: its Metadata lists the brokers
    with Producer(controller, acks="all") as producer:
        metadata = producer.send("placed", b"via-a-controller", partition=3).result(30)
    with Consumer(controller, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("placed", 3)])
        records = []
        wait_until(lambda: records.extend(consumer.poll(timeout_ms=500)) or records, 30, "the record back")
    assert (records[0].offset, records[0].value) == (metadata.offset, b"via-a-controller")


def test_kill_9_of_the_active_controller_and_of_a_broker_under_acks_all_loses_nothing(cluster):
    with cluster.admin() as admin:
        admin.create_topic("ledger", partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})
    workload = Workload(cluster.bootstrap_servers, "ledger", 3, records_per_s=200)
    workload.start()
    try:
        workload.wait_for_progress(200, timeout_s=60)
        active = cluster.wait_for_leader()
        assert active in CONTROLLERS
        cluster.remember_epochs()
        cluster.kill_node(active)
        others = [i for i in cluster.specs if i != active]
        assert cluster.wait_for_leader(timeout_s=30, node_ids=others, exclude=active) in CONTROLLERS
        workload.wait_for_progress(200, timeout_s=60)  # the data plane never needed the controller
        cluster.start_node(active)
        cluster.wait_for_rejoin(active, timeout_s=60)

        victim = describe_partition(cluster, "ledger")["leader"]
        assert victim in BROKERS
        cluster.kill_node(victim)
        survivors = [i for i in cluster.specs if i != victim]
        wait_until(
            lambda: describe_partition(cluster, "ledger", survivors)["leader"] not in (victim, -1),
            30,
            "a new leader for ledger-0",
        )
        workload.wait_for_progress(200, timeout_s=60)
        cluster.start_node(victim)
        cluster.wait_for_rejoin(victim, timeout_s=60)
        workload.wait_for_progress(100, timeout_s=60)
    except BaseException:
        workload.abort()
        raise
    unanswered = workload.stop()
    served, problem = read_topic(cluster.bootstrap_servers, "ledger", 3)
    assert problem is None, problem
    verdict = check(workload.acks, served)
    assert verdict.ok, verdict.summary()
    assert verdict.acknowledged >= 800 and unanswered == 0, verdict.summary()


def _voters(admin) -> list[int]:
    return sorted(admin.describe_quorum()["current_voters"])


def test_add_a_fourth_controller_and_remove_controllers_the_leader_included_under_load(cluster):
    with cluster.admin() as admin:
        admin.create_topic("membership", partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})
    workload = Workload(cluster.bootstrap_servers, "membership", 3, records_per_s=100)
    workload.start()
    try:
        workload.wait_for_progress(100, timeout_s=60)
        joining = cluster.add_node(("controller",))
        cluster.start_node(joining)
        with cluster.admin(timeout_ms=30_000) as admin:
            wait_until(
                lambda: joining in admin.describe_quorum()["current_observers"], 30, "the new controller to follow"
            )
            assert _voters(admin) == CONTROLLERS, "an observer is not a voter until added"
            result = cli(
                "quorum",
                "add-controller",
                "--controller-id",
                str(joining),
                "--bootstrap-server",
                cluster.specs[4].address,
            )
            assert result.returncode == 0, result.stderr
            assert _voters(admin) == [*CONTROLLERS, joining]
            refused = cli(
                "quorum", "remove-controller", "--controller-id", "99", "--bootstrap-server", cluster.specs[1].address
            )
            assert refused.returncode == 1 and "VOTER_NOT_FOUND" in refused.stderr and "not a voter" in refused.stderr
            twice = cli(
                "quorum",
                "add-controller",
                "--controller-id",
                str(joining),
                "--bootstrap-server",
                cluster.specs[1].address,
            )
            assert twice.returncode == 1 and "DUPLICATE_VOTER" in twice.stderr, twice.stderr
            broker = cli(
                "quorum",
                "add-controller",
                "--controller-id",
                str(BROKERS[0]),
                "--bootstrap-server",
                cluster.specs[1].address,
            )
            assert broker.returncode == 1 and "INVALID_VOTER_KEY" in broker.stderr, broker.stderr
            assert "process.roles=broker" in broker.stderr and _voters(admin) == [*CONTROLLERS, joining]
            workload.wait_for_progress(50, timeout_s=60)

            leader = cluster.wait_for_leader()
            follower = next(i for i in CONTROLLERS if i != leader)
            assert admin.remove_raft_voter(follower)["voters"] == sorted(set(CONTROLLERS + [joining]) - {follower})
            workload.wait_for_progress(50, timeout_s=60)

            # The leader removes itself: it steps down once the change commits; another voter leads.
            remaining = sorted(set(CONTROLLERS + [joining]) - {follower})
            assert admin.remove_raft_voter(leader)["voters"] == sorted(set(remaining) - {leader})
            new_leader = cluster.wait_for_leader(timeout_s=30, exclude=leader)
            assert new_leader in set(remaining) - {leader}
            assert _voters(admin) == sorted(set(remaining) - {leader})
            workload.wait_for_progress(50, timeout_s=60)

            # The voter set is in the log: a voter restarted with its old config file keeps it.
            survivor = next(i for i in _voters(admin) if i != new_leader)
            cluster.kill_node(survivor)
            cluster.start_node(survivor)
            cluster.wait_for_rejoin(survivor, timeout_s=60)
            assert _voters(admin) == sorted(set(remaining) - {leader})
            workload.wait_for_progress(50, timeout_s=60)
    except BaseException:
        workload.abort()
        raise
    unanswered = workload.stop()
    served, problem = read_topic(cluster.bootstrap_servers, "membership", 3)
    assert problem is None, problem
    verdict = check(workload.acks, served)
    assert verdict.ok and unanswered == 0, verdict.summary()
