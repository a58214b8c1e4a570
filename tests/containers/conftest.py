"""Fixtures of the container tests: one three-node cluster of raftlog containers per module,
removed (containers, network, volumes) at the end even when a test fails."""

from __future__ import annotations

import pytest

from chaos.containers import ContainerCluster, docker_client_or_reason, ensure_image

# A follower that stops fetching leaves the ISR after 1.5 s (default 10 s), so pause and
# partition tests see it leave and come back within seconds.
FAST_ISR_ENV = {"RAFTLOG_REPLICA_LAG_TIME_MAX_MS": "1500"}


@pytest.fixture(scope="module")
def docker_client():
    client, reason = docker_client_or_reason()
    if client is None:
        pytest.skip(reason)
    ensure_image(client)
    yield client
    client.close()


@pytest.fixture(scope="module")
def cluster(docker_client):
    cluster = ContainerCluster(docker_client, nodes=3, extra_env=FAST_ISR_ENV)
    try:
        cluster.start()
        cluster.wait_for_brokers(3)
        yield cluster
    finally:
        cluster.remove()
