"""The metadata quorum as real processes: failover, restarts, pauses, snapshot catch-up."""

from __future__ import annotations

import signal
import urllib.request

import pytest

from raftlog.client.admin import Admin
from raftlog.errors import RaftlogError
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.slow


def set_retention(admin: Admin, hours: int) -> int:
    return admin.alter_configs("brokers", "", {"log.retention.hours": str(hours)})


def node_admin(cluster, node_id: int, timeout_ms: int = 5000) -> Admin:
    return Admin(cluster.specs[node_id].address, timeout_ms=timeout_ms)


def dynamic_default(admin: Admin) -> dict[str, str]:
    return {c["name"]: c["value"] for c in admin.describe_configs("brokers", "")}


def test_kill_9_of_the_leader_elects_a_new_one_that_commits(make_cluster):
    cluster = make_cluster()
    cluster.start()
    old_leader = cluster.wait_for_leader()
    cluster.wait_for_brokers(3)
    cluster.kill_node(old_leader)
    survivors = [i for i in cluster.specs if i != old_leader]
    new_leader = cluster.wait_for_leader(node_ids=survivors, exclude=old_leader, timeout_s=15)
    assert new_leader in survivors
    with cluster.admin(survivors) as admin:
        set_retention(admin, 5)
        assert dynamic_default(admin)["log.retention.hours"] == "5"
        quorum = admin.describe_quorum()
        assert quorum["leader_id"] == new_leader
        assert quorum["current_voters"] == [1, 2, 3]
        # the dead node is fenced once its session expires
        wait_until(
            lambda: next(b for b in admin.describe_cluster()["brokers"] if b["id"] == old_leader)["fenced"],
            15,
            "the killed broker to be fenced",
        )


def test_configs_survive_a_restart_of_all_three(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_leader()
    with cluster.admin() as admin:
        set_retention(admin, 42)
        admin.alter_configs("brokers", "", {"num.partitions": "6", "min.insync.replicas": "1"})
        admin.alter_configs("brokers", "", delete_configs=["min.insync.replicas"])
    cluster.stop()
    cluster.start()
    cluster.wait_for_leader()
    for node_id in cluster.specs:
        with node_admin(cluster, node_id) as admin:
            assert wait_until(
                lambda: dynamic_default(admin) == {"log.retention.hours": "42", "num.partitions": "6"},
                15,
                f"node {node_id} to replay its configs",
            )


def test_a_paused_leader_cannot_commit_and_catches_up_after_sigcont(make_cluster):
    cluster = make_cluster()
    cluster.start()
    paused = cluster.wait_for_leader()
    cluster.wait_for_brokers(3)
    others = [i for i in cluster.specs if i != paused]
    cluster.signal_node(paused, signal.SIGSTOP)
    try:
        cluster.wait_for_leader(node_ids=others, exclude=paused, timeout_s=15)
        with cluster.admin(others) as admin:
            offset = set_retention(admin, 77)
        # The paused process accepted nothing: its gRPC calls do not even answer.
        with node_admin(cluster, paused, timeout_ms=500) as admin:
            with pytest.raises(RaftlogError):
                admin.describe_quorum()
    finally:
        cluster.signal_node(paused, signal.SIGCONT)
    with node_admin(cluster, paused) as admin:
        wait_until(
            lambda: dynamic_default(admin).get("log.retention.hours") == "77", 15, "the resumed node to catch up"
        )
        cluster_view = admin.describe_cluster()
        assert cluster_view["controller_id"] != paused or cluster_view["controller_id"] in others
    with cluster.admin() as admin:
        quorum = admin.describe_quorum()
        assert quorum["leader_id"] in others
        assert quorum["high_watermark"] >= offset


def test_a_node_that_was_down_during_compaction_comes_back_by_snapshot(make_cluster):
    cluster = make_cluster(extra_config={"metadata.snapshot.interval.records": 20}, metrics=True)
    cluster.start()
    cluster.wait_for_leader()
    cluster.wait_for_brokers(3)
    leader = cluster.wait_for_leader()
    lagging = next(i for i in cluster.specs if i != leader)
    cluster.stop_node(lagging)
    others = [i for i in cluster.specs if i != lagging]
    with cluster.admin(others) as admin:
        for hours in range(1, 121):
            set_retention(admin, hours)
    for node_id in others:
        assert wait_until(
            lambda: scrape(cluster, node_id, "raftlog_raft_snapshot_index") >= 100, 15, f"node {node_id} to snapshot"
        )
    cluster.start_node(lagging)
    with node_admin(cluster, lagging) as admin:
        wait_until(
            lambda: dynamic_default(admin).get("log.retention.hours") == "120", 20, "the lagging node to catch up"
        )
    # It could only have caught up by InstallSnapshot: the others dropped those entries.
    assert scrape(cluster, lagging, "raftlog_raft_snapshot_index") >= 100


def scrape(cluster, node_id: int, metric: str) -> float:
    url = f"http://127.0.0.1:{cluster.specs[node_id].metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(metric + " "):
                return float(line.split()[1])
    raise AssertionError(f"{metric} not exported by node {node_id}")
