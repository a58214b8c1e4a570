"""Leadership moving again and again under an idempotent acks=all producer (issue 9 §1): every
acknowledged record is served once, at its acknowledged offset, in send order."""

from __future__ import annotations

import pytest

from chaos.checker import check
from chaos.workload import Workload, read_topic
from tests.integration.conftest import describe_partition, wait_until
from tests.integration.test_data_plane import FAST_ISR

pytestmark = pytest.mark.slow

PARTITIONS = 2
ELECTIONS = 24  # leader changes, spread over the partitions
RECORDS_BETWEEN_ELECTIONS = 40
RECORDS_PER_S = 300


def move_leadership(cluster, topic: str, partition: int) -> int:
    """Makes another in-sync replica the preferred one (a reassignment that only reorders the
    replicas finishes at once) and elects it; returns the new leader."""
    current = wait_until(
        lambda: (p := describe_partition(cluster, topic, partition=partition)) and len(p["isr"]) == 3 and p,
        30,
        f"the full ISR of {topic}-{partition}",
    )
    replicas = current["replicas"]
    successor = next(r for r in replicas[1:] + replicas[:1] if r != current["leader"])
    target = [successor] + [r for r in replicas if r != successor]
    with cluster.admin() as admin:
        admin.reassign_partition(topic, partition, target)
        [result] = admin.elect_leaders("preferred", [(topic, partition)])
    assert result["error"] is None, result
    wait_until(
        lambda: describe_partition(cluster, topic, partition=partition)["leader"] == successor,
        30,
        f"{successor} to lead {topic}-{partition}",
    )
    return successor


def test_an_election_storm_loses_duplicates_and_reorders_nothing(make_cluster):
    cluster = make_cluster(extra_config=FAST_ISR)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("storm", partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
    for partition in range(PARTITIONS):
        wait_until(
            lambda: len(describe_partition(cluster, "storm", partition=partition)["isr"]) == 3, 30, "the full ISR"
        )

    workload = Workload(cluster.bootstrap_servers, "storm", PARTITIONS, records_per_s=RECORDS_PER_S)
    workload.start()
    try:
        leaders = []
        for election in range(ELECTIONS):
            workload.wait_for_progress(RECORDS_BETWEEN_ELECTIONS, timeout_s=60)
            leaders.append(move_leadership(cluster, "storm", election % PARTITIONS))
        workload.wait_for_progress(RECORDS_BETWEEN_ELECTIONS, timeout_s=60)
        workload.stop()
    except BaseException:
        workload.abort()
        raise
    assert len(set(leaders)) == 3, f"leadership visited every broker: {leaders}"
    assert not workload.failures, f"sends failed: {workload.failures}"
    served, incomplete = read_topic(cluster.bootstrap_servers, "storm", PARTITIONS)
    assert incomplete is None, f"the topic could not be read back: {incomplete}"
    verdict = check(workload.acks, served)
    assert verdict.acknowledged >= ELECTIONS * RECORDS_BETWEEN_ELECTIONS
    assert verdict.ok and verdict.unacknowledged == 0, verdict.summary()
