"""The Prometheus endpoint of real nodes reports what an operator would check after traffic and a failure."""

from __future__ import annotations

import re
import urllib.request

import pytest

from raftlog.client.producer import Producer
from tests.integration.conftest import wait_until
from tests.integration.test_data_plane import FAST_ISR, read_all

pytestmark = pytest.mark.slow
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(cluster, node_id: int) -> list[tuple[str, dict[str, str], float]]:
    url = f"http://127.0.0.1:{cluster.specs[node_id].metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def value(samples, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`; 0.0 when it has not been reported."""
    found = [v for n, tags, v in samples if n == name and all(tags.get(k) == w for k, w in labels.items())]
    assert len(found) <= 1, f"{name} {labels} is ambiguous: {found}"
    return found[0] if found else 0.0


def test_traffic_replication_and_a_lost_follower_show_in_the_metrics(make_cluster):
    cluster = make_cluster(extra_config=FAST_ISR, metrics=True)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("metered", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
        leader = wait_until(
            lambda: (
                admin.describe_topics(["metered"])[0]["partitions"][0]["leader"] > 0
                and admin.describe_topics(["metered"])[0]["partitions"][0]["leader"]
            ),
            20,
            "a leader",
        )
    controllers = [value(scrape(cluster, n), "raftlog_active_controller") for n in cluster.specs]
    assert sorted(controllers) == [0.0, 0.0, 1.0], "exactly one active controller across the cluster"
    for node_id in cluster.specs:  # heartbeats carry the controller's clock: every node's agrees with it
        samples = scrape(cluster, node_id)
        assert value(samples, "raftlog_time_retention_suspended") == 0
        assert abs(value(samples, "raftlog_clock_skew_ms")) < 60_000

    with Producer(cluster.bootstrap_servers, acks="all", linger_ms=2) as producer:
        futures = [producer.send("metered", b"v" * 50, key=b"k%d" % i) for i in range(500)]
        producer.flush()
        assert all(f.result(10).offset >= 0 for f in futures)
    on_leader = scrape(cluster, leader)
    assert value(on_leader, "raftlog_messages_in_total", topic="metered") == 500
    assert value(on_leader, "raftlog_bytes_in_total", topic="metered") >= 500 * 50
    assert value(on_leader, "raftlog_requests_total", api="Produce") >= 1
    assert value(on_leader, "raftlog_request_latency_seconds_count", api="Produce") >= 1
    for node_id in cluster.specs:  # every replica reports the same log end, and a log on disk
        wait_until(
            lambda: value(scrape(cluster, node_id), "raftlog_log_end_offset", topic="metered", partition="0") == 500,
            10,
            f"node {node_id} to replicate",
        )
        assert value(scrape(cluster, node_id), "raftlog_log_size_bytes", topic="metered", partition="0") > 500 * 50
    assert value(on_leader, "raftlog_under_replicated_partitions") == 0

    assert len(read_all(cluster.bootstrap_servers, "metered", 1, 500)[0]) == 500
    assert value(scrape(cluster, leader), "raftlog_bytes_out_total", topic="metered") >= 500 * 50

    follower = next(n for n in cluster.specs if n != leader)
    cluster.kill_node(follower)
    wait_until(
        lambda: value(scrape(cluster, leader), "raftlog_under_replicated_partitions") == 1,
        20,
        "the leader to report the partition under-replicated",
    )
    after = scrape(cluster, leader)
    assert value(after, "raftlog_under_min_isr_partitions") == 0  # ISR 2 of min.insync.replicas 2
    assert value(after, "raftlog_offline_partitions") == 0
    with Producer(cluster.bootstrap_servers, acks="all", linger_ms=2) as producer:
        for i in range(100):
            producer.send("metered", b"late-%d" % i)
        producer.flush()
    lagging = scrape(cluster, leader)
    assert value(lagging, "raftlog_follower_lag", topic="metered", partition="0", replica=str(follower)) == 100
    assert value(lagging, "raftlog_log_end_offset", topic="metered", partition="0") == 600
