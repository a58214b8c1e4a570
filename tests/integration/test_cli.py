"""The CLI against real processes: cluster up, quorum/cluster/configs commands, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from raftlog.v1 import (
    controller_pb2,
    controller_pb2_grpc,
    metadata_pb2,
    raft_pb2,
    raft_pb2_grpc,
)
from tests.integration.conftest import free_port_block

pytestmark = pytest.mark.slow

RAFTLOG = [sys.executable, "-m", "cli.main"]


def run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(RAFTLOG + list(args), capture_output=True, text=True, timeout=timeout_s)


def cli_json(*args: str):
    result = run_cli(*args, "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cluster_up_serves_the_admin_commands_and_stops_on_sigterm(tmp_path):
    base = free_port_block(3)
    bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    up = subprocess.Popen(
        RAFTLOG
        + ["cluster", "up", "--data-dir", str(tmp_path / "data"), "--base-port", str(base), "--metrics-base-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        ready = up.stdout.readline()
        assert "ready" in ready and bootstrap in ready, ready + up.stderr.read() if up.poll() else ready
        status = cli_json("quorum", "describe", "--status", "--bootstrap-server", bootstrap)
        assert set(status) == {
            "cluster_id",
            "leader_id",
            "leader_epoch",
            "high_watermark",
            "max_follower_lag",
            "current_voters",
            "current_observers",
        }
        assert status["leader_id"] in (1, 2, 3) and status["current_voters"] == [1, 2, 3]
        assert status["current_observers"] == []  # combined nodes all vote
        rows = cli_json("quorum", "describe", "--replication", "--bootstrap-server", bootstrap)
        assert sorted(r["node_id"] for r in rows) == [1, 2, 3]
        assert [r["status"] for r in rows].count("Leader") == 1
        assert set(rows[0]) == {
            "node_id",
            "log_end_offset",
            "lag",
            "last_fetch_ms_ago",
            "last_caught_up_ms_ago",
            "status",
        }

        altered = run_cli(
            "configs",
            "alter",
            "--entity-type",
            "brokers",
            "--entity-default",
            "--add-config",
            "log.retention.hours=72,log.cleanup.policy=[delete,compact]",
            "--bootstrap-server",
            bootstrap,
        )
        assert altered.returncode == 0, altered.stderr
        described = cli_json(
            "configs", "describe", "--entity-type", "brokers", "--entity-default", "--bootstrap-server", bootstrap
        )
        values = {c["name"]: (c["value"], c["source"]) for c in described["configs"]}
        assert values == {
            "log.retention.hours": ("72", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
            "log.cleanup.policy": ("delete,compact", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
        }
        deleted = run_cli(
            "configs",
            "alter",
            "--entity-type",
            "brokers",
            "--entity-default",
            "--delete-config",
            "log.cleanup.policy",
            "--bootstrap-server",
            bootstrap,
        )
        assert deleted.returncode == 0, deleted.stderr

        bad = run_cli(
            "configs",
            "alter",
            "--entity-type",
            "brokers",
            "--entity-default",
            "--add-config",
            "log.retention.hours=soon",
            "--bootstrap-server",
            bootstrap,
        )
        assert bad.returncode != 0 and "INVALID_CONFIG" in bad.stderr

        brokers = wait_for_unfenced(bootstrap, 3)
        assert sorted(b["id"] for b in brokers) == [1, 2, 3]
        text = run_cli("cluster", "describe", "--bootstrap-server", bootstrap)
        assert "BrokerId" in text.stdout and f"127.0.0.1:{base}" in text.stdout
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=30)
    assert up.returncode == 0


def wait_for_unfenced(bootstrap: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        brokers = cli_json("cluster", "describe", "--bootstrap-server", bootstrap)["brokers"]
        if sum(not b["fenced"] for b in brokers) == count:
            return brokers
        time.sleep(0.2)
    raise AssertionError("brokers were not unfenced")


def start_node(tmp_path, *sets: str, format_if_empty: bool = True) -> subprocess.CompletedProcess:
    args = ["node", "start", "--set", f"log.dirs={tmp_path / 'd'}", "--set", "cluster.id=abc"]
    for item in sets:
        args += ["--set", item]
    if format_if_empty:
        args.append("--format-if-empty")
    return run_cli(*args, timeout_s=30)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["node.id=1", "controller.quorum.voters=1@127.0.0.1:1,1@127.0.0.1:2"], "voter id 1 appears twice"),
        (
            ["node.id=4", "controller.quorum.voters=1@127.0.0.1:1"],
            "node 4 is not a voter, so controller.quorum.voters gives no address",
        ),
        (["node.id=1", "controller.quorum.voters=1@127.0.0.1:notaport"], "is not host:port"),
        (["node.id=1", "controller.quorum.voters=1@127.0.0.1:1", "metrics.port=-2"], "metrics.port"),
    ],
)
def test_bad_configuration_stops_the_node_with_one_line(tmp_path, sets, message):
    result = start_node(tmp_path, *sets)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_data_dir_of_another_cluster_or_node_is_refused(tmp_path):
    formatted = run_cli(
        "storage",
        "format",
        "--set",
        "node.id=1",
        "--set",
        "controller.quorum.voters=1@127.0.0.1:1",
        "--set",
        f"log.dirs={tmp_path / 'd'}",
        "--cluster-id",
        "other",
    )
    assert formatted.returncode == 0, formatted.stderr
    result = start_node(tmp_path, "node.id=1", "controller.quorum.voters=1@127.0.0.1:1")
    assert result.returncode != 0 and "belongs to cluster 'other', not 'abc'" in result.stderr
    result = start_node(tmp_path, "node.id=2", "controller.quorum.voters=2@127.0.0.1:1", "cluster.id=other")
    assert result.returncode != 0 and "belongs to node 1, not node 2" in result.stderr
    unformatted = start_node(
        tmp_path / "fresh", "node.id=1", "controller.quorum.voters=1@127.0.0.1:1", format_if_empty=False
    )
    assert unformatted.returncode != 0 and "not formatted" in unformatted.stderr


def test_requests_for_another_cluster_are_refused(make_cluster):
    cluster = make_cluster(nodes=1)
    cluster.start()
    leader = cluster.wait_for_leader()
    with grpc.insecure_channel(cluster.specs[leader].address) as channel:
        stub = controller_pb2_grpc.ControllerServiceStub(channel)
        request = controller_pb2.RegisterBrokerRequest(
            cluster_id="someone-else",
            broker_id=9,
            incarnation_id="x",
            endpoint=metadata_pb2.Endpoint(host="127.0.0.1", port=1),
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.RegisterBroker(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "INCONSISTENT_CLUSTER_ID" in info.value.details()


def test_raft_messages_from_another_cluster_are_refused(make_cluster):
    cluster = make_cluster(nodes=1)
    cluster.start()
    leader = cluster.wait_for_leader()
    with grpc.insecure_channel(cluster.specs[leader].address) as channel:
        stub = raft_pb2_grpc.RaftServiceStub(channel)
        batch = raft_pb2.RaftMessageBatch(
            cluster_id="someone-else", from_node=leader, messages=[raft_pb2.RaftMessage(type=7, to=leader, term=99)]
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Send(iter([batch]), timeout=5)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "INCONSISTENT_CLUSTER_ID" in info.value.details()
    with cluster.admin() as admin:
        assert admin.describe_quorum()["leader_epoch"] < 99  # the foreign message changed nothing


def test_nodes_numbered_from_0_by_env_vars_elect_a_controller_and_alter_configs(tmp_path):
    """Kafka operators number nodes from 0: node 0's vote and leadership must count (0 is not "no node")."""
    base = free_port_block(3)
    voters = ",".join(f"{i}@127.0.0.1:{base + i}" for i in range(3))
    bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    processes = []
    try:
        for node_id in range(3):
            env = {
                **os.environ,
                "RAFTLOG_NODE_ID": str(node_id),
                "RAFTLOG_CONTROLLER_QUORUM_VOTERS": voters,
                "RAFTLOG_LOG_DIRS": str(tmp_path / f"node-{node_id}"),
                "RAFTLOG_CLUSTER_ID": "zero-based",
                "RAFTLOG_METRICS_PORT": "0",
            }
            with open(tmp_path / f"node-{node_id}.log", "wb") as log_file:
                processes.append(
                    subprocess.Popen(
                        RAFTLOG + ["node", "start", "--format-if-empty"],
                        env=env,
                        stdout=log_file,
                        stderr=log_file,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 30
        status = {"leader_id": -1}
        while status["leader_id"] < 0 and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), (tmp_path / "node-0.log").read_text()
            result = run_cli("quorum", "describe", "--status", "--bootstrap-server", bootstrap, "--output", "json")
            if result.returncode == 0:
                status = json.loads(result.stdout)
            time.sleep(0.1)
        assert status["leader_id"] in (0, 1, 2) and status["current_voters"] == [0, 1, 2], status
        assert cli_json("cluster", "describe", "--bootstrap-server", bootstrap)["controller_id"] in (0, 1, 2)
        altered = run_cli(
            "configs",
            "alter",
            "--entity-type",
            "brokers",
            "--entity-default",
            "--add-config",
            "log.retention.hours=72",
            "--bootstrap-server",
            bootstrap,
        )
        assert altered.returncode == 0, altered.stderr
        described = cli_json(
            "configs", "describe", "--entity-type", "brokers", "--entity-default", "--bootstrap-server", bootstrap
        )
        assert {c["name"]: c["value"] for c in described["configs"]} == {"log.retention.hours": "72"}
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
