"""One short chaos run on containers (`python -m chaos --backend docker`): each fault kind of the
docker backend once, under the acks=all workload and the live reader, judged by the checker, and
the report it leaves (the verdict and a timeline PNG)."""

from __future__ import annotations

import time

import pytest

from chaos.containers import ContainerCluster
from chaos.docker_run import DOCKER_FAULT_KINDS, DockerChaosRun
from chaos.report import REPORT_NAME, TIMELINE_NAME
from chaos.schedule import PlannedFault
from tests.chaos.test_nemesis import SECURE_RUN_REFUSALS
from tests.unit.test_chaos_report import png_size

pytestmark = pytest.mark.slow


def test_every_docker_fault_once_loses_nothing(docker_client, tmp_path):
    run = DockerChaosRun(tmp_path, hold_s=3.0)
    try:
        verdict = run.run([PlannedFault(kind, draw) for draw, kind in enumerate(DOCKER_FAULT_KINDS)])
    finally:
        run.close()
    assert len(run.faults) == len(DOCKER_FAULT_KINDS), run.problems
    assert all(f.recovered_s is not None for f in run.faults), run.faults
    assert verdict.ok, verdict.summary()
    assert verdict.acknowledged > 1000
    effects = {f.name: f.effect for f in run.faults}
    throttled = next(effect for name, effect in effects.items() if name.startswith("bandwidth"))
    assert throttled["overlimits"] > 0, f"the token bucket never held a packet back: {throttled}"
    assert effects["rolling restart"] == {"restarts": 3}
    assert effects["clock +8d"] == {"skewed": 1}, "the skewed container's clock was not 8 days ahead"

    report = (tmp_path / REPORT_NAME).read_text()
    assert report.startswith(f"verdict: PASS {verdict.summary()}\n"), report
    assert all(f"{f.name} (" in report for f in run.faults), report
    timeline = (tmp_path / TIMELINE_NAME).read_bytes()
    assert png_size(timeline) == (1200, 650)
    assert len(timeline) > 20_000, len(timeline)


def test_secure_containers_refuse_plaintext_and_lose_nothing(docker_client, tmp_path):
    """`python -m chaos --backend docker --secure`: the containers' listeners are SSL with client
    certificates required and ACLs on (mutual TLS between nodes by their container host names);
    plaintext is refused on every node's published client listener and on its internal listener
    on the Docker network, the workload user may not touch a topic it has no ACL for, and a kill
    (the restarted node rejoining over mutual TLS) and an isolation lose nothing."""
    run = DockerChaosRun(tmp_path, hold_s=3.0, secure=True)
    try:
        verdict = run.run([PlannedFault(kind, 0) for kind in ("kill_leader", "isolate_leader")])
    finally:
        run.close()
    assert run.security_checks == SECURE_RUN_REFUSALS, run.security_checks
    assert len(run.faults) == 2 and all(f.recovered_s is not None for f in run.faults), run.faults
    assert verdict.acknowledged > 500, verdict.summary()
    assert verdict.ok, verdict.summary()


def test_secure_containers_report_healthy(docker_client, tmp_path):
    """The image's HEALTHCHECK asks an SSL inter-broker listener over TLS with the node's own
    certificate (in plaintext it was refused, and docker called every secure node unhealthy)."""
    cluster = ContainerCluster(docker_client, nodes=3, secure_dir=tmp_path)
    try:
        cluster.start()
        cluster.wait_for_brokers(3)
        health = wait_healthy(cluster)
    finally:
        cluster.remove()
    assert health == {n: "healthy" for n in (1, 2, 3)}, health


def wait_healthy(cluster, attempts: int = 60) -> dict[int, str]:
    """Each container's docker health status, once none is "starting" (or after `attempts` looks)."""
    for _ in range(attempts):
        health = {
            n: cluster.docker_container(n).attrs["State"].get("Health", {}).get("Status") for n in cluster.node_ids
        }
        if all(status == "healthy" for status in health.values()):
            break
        time.sleep(1)
    return health
