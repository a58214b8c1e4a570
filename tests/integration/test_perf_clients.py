"""`raftlog perf latency|produce|consume` against a real cluster: every figure is there, the
percentiles are ordered and the record counts are exactly what was asked (never their speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from raftlog.client import Producer
from raftlog.cluster.local import LocalCluster
from tests.integration.conftest import free_port_block

pytestmark = pytest.mark.slow

RAFTLOG = [sys.executable, "-m", "cli.main"]


def perf(*args: str, timeout_s: float = 240) -> dict:
    result = subprocess.run(
        RAFTLOG + ["perf", *args, "--output", "json"], capture_output=True, text=True, timeout=timeout_s
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(6)
    cluster = LocalCluster(tmp_path_factory.mktemp("perf"), nodes=3, base_port=base, metrics_base_port=base + 3)
    try:
        cluster.start()
        cluster.wait_for_brokers(3)
        yield cluster
    finally:
        cluster.stop()


def assert_ordered(figures: dict) -> None:
    assert 0 < figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] <= figures["p99_9_ms"]
    assert figures["p99_9_ms"] <= figures["max_ms"]


def test_perf_latency_creates_its_topic_and_reports_each_phase_for_exactly_the_records_asked(cluster):
    report = perf(
        "latency",
        "--topic",
        "lat",
        "--num-records",
        "30",
        "--throughput",
        "200",
        "--rate-records",
        "50",
        "--e2e-records",
        "20",
        "--bootstrap-server",
        cluster.bootstrap_servers,
    )
    assert report["topic"] == "lat" and len(report["replicas"]) == 3 and report["leader"] in report["replicas"]
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases) == {"one-at-a-time", "fixed-rate 200/s", "end-to-end"}
    for phase, count in (("one-at-a-time", 30), ("fixed-rate 200/s", 50), ("end-to-end", 20)):
        figures = phases[phase]
        assert (figures["records"], figures["measured"], figures["errors"]) == (count, count, 0)
        assert_ordered(figures)
    with cluster.admin() as admin:
        [described] = admin.describe_topics(["lat"])
        assert len(described["partitions"]) == 1
        # Every write of the three phases is in the log, once.
        assert admin.list_offsets([("lat", 0)], -1)[("lat", 0)] == 30 + 50 + 20


def test_perf_consume_stops_at_exactly_the_records_asked_with_and_without_decoding(cluster):
    with cluster.admin() as admin:
        admin.create_topic("consumed", partitions=1, replication_factor=3)
    with Producer(cluster.bootstrap_servers, acks="all") as producer:  # 16 KiB batches: ~130 records each
        for i in range(3000):
            producer.send("consumed", b"%099d" % i)
        producer.flush()
    for decode in ("--decode", "--no-decode"):
        report = perf(
            "consume",
            "--topic",
            "consumed",
            "--messages",
            "1000",
            decode,
            "--bootstrap-server",
            cluster.bootstrap_servers,
        )
        assert report["records"] == 1000 and report["decoded"] == (decode == "--decode")
    everything = perf(
        "consume",
        "--topic",
        "consumed",
        "--messages",
        "5000",
        "--timeout-ms",
        "2000",
        "--bootstrap-server",
        cluster.bootstrap_servers,
    )
    assert everything["records"] == 3000 and everything["batches"] > 1  # all there is, counted from headers


def test_perf_produce_uses_the_producer_defaults_and_reports_what_its_figure_depends_on(cluster):
    with cluster.admin() as admin:
        admin.create_topic("produced", partitions=1, replication_factor=3)
        leader = admin.describe_topics(["produced"])[0]["partitions"][0]["leader"]
    report = perf(
        "produce",
        "--topic",
        "produced",
        "--num-records",
        "2000",
        "--warmup-records",
        "300",
        "--bootstrap-server",
        cluster.bootstrap_servers,
    )
    assert (report["records"], report["warmup_records"], report["errors"]) == (2000, 300, 0)
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"] <= report["max_latency_ms"]
    assert report["settings"]["batch_size"] == 16384 and report["settings"]["linger_ms"] == 5  # the Producer's
    assert report["leaders"] == {"0": leader}
    # Only the measured records are in the producer's counts: 100-byte records, so several batches.
    assert report["requests"] >= 2000 * 100 // 16384
    assert report["records_per_request"] * report["requests"] == pytest.approx(2000, abs=1)
    assert 0 < report["avg_batch_bytes"] <= 16384 + 200 and report["client_cpu_s"] > 0
    assert set(report["load_average_1m"]) == {"before", "after"}
    assert set(report["node_idle_cpu_per_s"]) == set(report["node_cpu_above_idle_s"]) == {"1", "2", "3"}
    assert set(report["node_cpu_s"]) == {"1", "2", "3"} and report["node_cpu_s"][str(leader)] > 0
    with cluster.admin() as admin:
        assert admin.list_offsets([("produced", 0)], -1)[("produced", 0)] == 2300
