"""One short chaos run on containers (`python -m chaos --backend docker`): each fault kind of the
docker backend once, under the acks=all workload and the live reader, judged by the checker."""

from __future__ import annotations

import pytest

from chaos.docker_run import DOCKER_FAULT_KINDS, DockerChaosRun
from chaos.schedule import PlannedFault

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
