"""Real node processes on loopback. Every process is started by LocalCluster and stopped by pid."""

from __future__ import annotations

import contextlib
import os
import socket
import time

import pytest

from raftlog.cluster.local import LocalCluster
from raftlog.cluster.secure import SASL_PORT_OFFSET
from raftlog.errors import RaftlogError

# RAFTLOG_TEST_PORTS=low-high: blocks are taken from that range only (several test runs sharing a
# machine, each in its own range), else from the kernel's ephemeral ports.
_PORT_RANGE = os.environ.get("RAFTLOG_TEST_PORTS", "")
_next_port = [int(_PORT_RANGE.partition("-")[0])] if _PORT_RANGE else []


def _candidate_base(count: int) -> int:
    if _next_port:
        high = int(_PORT_RANGE.partition("-")[2])
        if _next_port[0] + count > high:
            raise RuntimeError(f"RAFTLOG_TEST_PORTS={_PORT_RANGE}: no block of {count} ports left")
        base = _next_port[0]
        _next_port[0] += count
        return base
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_block(count: int) -> int:
    """A base port such that base..base+count-1 are free on 127.0.0.1 right now."""
    for _ in range(200):
        base = _candidate_base(count)
        if base + count >= 65000:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports")


@contextlib.contextmanager
def running_kafka_cluster(directory, extra_config: dict | None = None):
    """Three nodes with Kafka listeners (gRPC on base..base+2, Kafka on base+3..base+5), brokers
    registered; stopped at the end. For a module's cluster fixture."""
    base = free_port_block(6)
    cluster = LocalCluster(
        directory, nodes=3, base_port=base, metrics_base_port=0, kafka_base_port=base + 3, extra_config=extra_config
    )
    try:
        cluster.start()
        cluster.wait_for_brokers(3, timeout_s=90)  # the bound of a loaded machine, not a speed claim
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def make_cluster(tmp_path):
    """Builds LocalClusters on free ports; stops all their processes at the end of the test."""
    clusters: list[LocalCluster] = []

    def make(
        nodes: int = 3, extra_config: dict | None = None, metrics: bool = False, secure: bool = False
    ) -> LocalCluster:
        """secure: as `cluster up --secure` (TLS, mutual TLS between nodes, ACLs on; its client and
        SASL listeners at base + 50.. and + 60..)."""
        base = free_port_block(SASL_PORT_OFFSET + nodes if secure else nodes * 2 if metrics else nodes)
        cluster = LocalCluster(
            tmp_path / f"cluster-{len(clusters)}",
            nodes=nodes,
            base_port=base,
            metrics_base_port=base + nodes if metrics else 0,
            extra_config=extra_config,
            secure=secure,
        )
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


@pytest.fixture(params=[False, True], ids=["plaintext", "tls-acls"])
def secure(request) -> bool:
    """Runs a test twice: on a plaintext cluster and on a secure one (make_cluster(secure=secure)),
    whose clients go through client_access."""
    return request.param


def client_access(cluster: LocalCluster, topic: str, group: str | None = None) -> dict:
    """Keyword arguments for a test's Producer and Consumer of `topic`: none on a plaintext cluster;
    on a secure one a non-super user's client certificate with only the ACLs an idempotent
    producer and a consumer of `topic` (and `group`) need."""
    if cluster.secure is None:
        return {}
    return cluster.add_client_user(f"{topic}-client", topic, group, idempotent=True)


def describe_partition(cluster, topic: str, node_ids=None, partition: int = 0) -> dict:
    """Leader, replicas and ISR of one partition, as the given nodes (default: any) see it."""
    with cluster.admin(node_ids, timeout_ms=3000) as admin:
        return admin.describe_topics([topic])[0]["partitions"][partition]


def wait_until(predicate, timeout_s: float, what: str):
    """Polls predicate (RaftlogError counts as not yet) until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except RaftlogError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
