"""Chaos: a three-node cluster in network namespaces under an acks=all idempotent workload,
through a network partition of the partition leader, a partition of the active controller, a
pause, a kill -9 and a clean restart. Nothing acknowledged may be lost, duplicated, moved or
reordered, and the replicas' files must agree at the end."""

from __future__ import annotations

import pytest

from chaos.nemesis import ChaosRun

pytestmark = pytest.mark.slow


def test_acknowledged_records_survive_partitions_pauses_kills_and_restarts(tmp_path):
    run = ChaosRun(tmp_path, hold_s=4.0)
    try:
        run.start()
        for fault in ChaosRun.FAULTS:
            getattr(run, fault)()
        verdict = run.finish()
    finally:
        run.close()
    assert [f.name for f in run.faults] == ["isolate partition leader", "partition controller",
                                            "pause partition leader", "kill -9 partition leader", "restart"]
    assert verdict.acknowledged > 2000, verdict.summary()
    # Available through every fault: leaderships move within the hold (4 s), and a partition
    # whose leader is gone does not hold up the producer's other partitions.
    assert all(f.acknowledged_while_held > 0 for f in run.faults), run.faults
    assert verdict.ok, verdict.summary()
