"""The monitoring setup of deploy/ checked for real: Prometheus from Debian's packages runs the
project's scrape config and alert rules against three raftlog containers, and the Grafana
dashboard asks only for metrics the nodes export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request

import pytest

from chaos.containers import REPO, free_ports, wait_until
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.errors import RaftlogError
from tests.containers.workload import read_back

pytestmark = pytest.mark.slow

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "raftlog.json"
COMPOSE_TARGETS = '["raftlog-1:9100", "raftlog-2:9100", "raftlog-3:9100"]'

# PromQL words that are not metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "rate",
    "irate",
    "increase",
    "delta",
    "histogram_quantile",
    "topk",
    "bottomk",
    "abs",
    "clamp_min",
    "clamp_max",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "deriv",
    "label_replace",
}
# Series Prometheus makes itself for every target rather than reading them from /metrics.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make test` installs it (apt-get install prometheus)")
    return path


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def prometheus(cluster, tmp_path_factory):
    """Prometheus with the project's config (targets rewritten to the containers' published metrics
    ports, nothing else changed) and rules, on a free loopback port; stopped by pid at the end."""
    binary = require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    assert COMPOSE_TARGETS in config, "the scrape targets of deploy/prometheus/prometheus.yml changed"
    targets = json.dumps([f"127.0.0.1:{cluster.ports[n].metrics}" for n in cluster.node_ids])
    (workdir / "prometheus.yml").write_text(config.replace(COMPOSE_TARGETS, targets))
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", workdir / "alerts.yml")
    [port] = free_ports(1)
    log = open(workdir / "prometheus.log", "wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def all_targets_up() -> bool:
            try:
                targets = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
            except OSError:
                return False
            return len(targets) == 3 and all(t["health"] == "up" for t in targets)

        wait_until(all_targets_up, 60, "Prometheus to scrape all three nodes")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def firing(prometheus_url: str) -> set[str]:
    alerts = get_json(f"{prometheus_url}/api/v1/alerts")["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def test_promtool_accepts_the_config_and_the_rules():
    promtool = require_tool("promtool")
    for args in (
        ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        ["check", "rules", str(PROMETHEUS_DIR / "alerts.yml")],
        # The consumer-lag rule needs minutes of growing lag: its unit test feeds it synthetic series.
        ["test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml")],
    ):
        result = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_a_container_is_killed_and_clear_when_it_returns(cluster, prometheus):
    with cluster.admin(timeout_ms=10_000) as admin:
        admin.create_topic("watched", partitions=3, replication_factor=3)
    cluster.wait_for_full_isr("watched")
    assert firing(prometheus) == set(), "alerts fire on a healthy cluster"

    victim = cluster.node_ids[-1]
    cluster.kill_node(victim)
    try:
        expected = {"RaftlogBrokerDown", "RaftlogUnderReplicatedPartitions", "RaftlogBrokerFenced"}
        wait_until(
            lambda: firing(prometheus) >= expected, 90, f"alerts {sorted(expected)} to fire with node {victim} killed"
        )
    finally:
        cluster.start_node(victim)
    cluster.wait_for_brokers(3)
    cluster.wait_for_full_isr("watched")
    wait_until(lambda: firing(prometheus) == set(), 90, "every alert to clear once the node is back")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"[^"]*"', "", expr)  # label values, strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    return {
        word
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text)
        if word not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", word)
    }


def scrape_all(cluster) -> list[str]:
    """The /metrics text of every node."""
    texts = []
    for n in cluster.node_ids:
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.ports[n].metrics}/metrics", timeout=5) as response:
            texts.append(response.read().decode())
    return texts


def exported_names(cluster) -> set[str]:
    names: set[str] = set()
    for text in scrape_all(cluster):
        for line in text.splitlines():
            if line and not line.startswith("#"):
                names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def test_every_dashboard_query_names_metrics_the_nodes_export_and_parses(cluster, prometheus):
    # Traffic of every kind the dashboard shows: produce, consume, a failed request.
    with cluster.admin(timeout_ms=10_000) as admin:
        admin.create_topic("dashboard", partitions=1, replication_factor=3)
        with pytest.raises(RaftlogError):
            admin.create_topic("dashboard", partitions=1, replication_factor=3)
    with Producer(cluster.bootstrap, acks="all") as producer:
        for i in range(50):
            producer.send("dashboard", b"%d" % i)
        producer.flush(60)
    read_back(cluster.bootstrap, "dashboard", 1)
    # The group gauges exist only for groups with committed offsets: a group 20 records behind.
    committer = Consumer(cluster.bootstrap, group_id="dashboard-readers", enable_auto_commit=False)
    try:
        committer.assign([TopicPartition("dashboard", 0)])
        committer.commit({TopicPartition("dashboard", 0): 30})
    finally:
        committer.close()
    wait_until(
        lambda: any(
            'raftlog_group_lag{group="dashboard-readers",partition="0",topic="dashboard"} 20.0' in text
            for text in scrape_all(cluster)
        ),
        30,
        "the group's coordinator to export its lag of 20 records",
    )

    exported = exported_names(cluster)
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len(panels) >= 15
    missing = {}
    for panel in panels:
        for target in panel["targets"]:
            unknown = metric_names(target["expr"]) - exported - PROMETHEUS_OWN
            if unknown:
                missing[panel["title"]] = sorted(unknown)
            answer = get_json(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": target["expr"]}))
            assert answer["status"] == "success", (panel["title"], answer)
    assert missing == {}, f"dashboard panels ask for metrics no node exports: {missing}"
