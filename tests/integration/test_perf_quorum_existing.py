"""`raftlog perf quorum --bootstrap-server`: the write rows against an existing cluster, the failover
row skipped saying so, and the cluster's configs left as they were."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_perf_quorum_measures_the_write_rows_of_an_existing_cluster(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.alter_configs("brokers", "", {"log.retention.hours": "77"})
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "perf", "quorum", "--writes", "300", "--concurrency", "8"]
        + ["--single-writes", "20", "--bootstrap-server", cluster.bootstrap_servers, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["pipelined_writes"] == 300 and summary["commit_latency_ms"]["count"] == 20
    assert summary["client_round_trip_ms"]["count"] == 20
    assert summary["failover_s"] == [] and summary["failover_median_s"] is None
    assert "the failover and AlterConfigs rows need their own cluster and are skipped" in result.stderr
    with cluster.admin() as admin:
        retention = {e["name"]: e["value"] for e in admin.describe_configs("brokers", "")}["log.retention.hours"]
    assert retention == "77", "the round-trip row put the operator's value back"
