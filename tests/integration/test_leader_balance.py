"""Automatic leader balance on real processes: after a broker restarts, the partitions it is the
preferred replica of are led by it again without an operator (auto.leader.rebalance.enable, with
a short leader.imbalance.check.interval.seconds)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 6


def _leaders(cluster, node_ids=None) -> dict[int, tuple[int, int, list[int]]]:
    """partition -> (leader, preferred replica, isr)"""
    with cluster.admin(node_ids, timeout_ms=3000) as admin:
        [topic] = admin.describe_topics(["balanced"])
    return {p["partition"]: (p["leader"], p["replicas"][0], p["isr"]) for p in topic["partitions"]}


@pytest.mark.parametrize("enabled", [True, False])
def test_preferred_leaders_return_by_themselves_after_a_broker_restart(make_cluster, enabled):
    cluster = make_cluster(
        extra_config={
            "leader.imbalance.check.interval.seconds": 1,
            "auto.leader.rebalance.enable": enabled,
            "replica.lag.time.max.ms": 2000,
        }
    )
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("balanced", partitions=PARTITIONS, replication_factor=3)
    wait_until(
        lambda: all(leader == preferred and len(isr) == 3 for leader, preferred, isr in _leaders(cluster).values()),
        30,
        "every partition led by its preferred replica with a full ISR",
    )
    victim = 1
    mine = sorted(p for p, (_, preferred, _) in _leaders(cluster).items() if preferred == victim)
    assert len(mine) == PARTITIONS // 3
    cluster.remember_epochs()
    others = [i for i in cluster.specs if i != victim]

    cluster.stop_node(victim)
    wait_until(
        lambda: all(_leaders(cluster, others)[p][0] not in (victim, -1) for p in mine), 20, "leaders moved off it"
    )
    cluster.start_node(victim)
    cluster.wait_for_rejoin(victim, timeout_s=30)
    wait_until(
        lambda: all(victim in _leaders(cluster)[p][2] for p in mine), 30, "the restarted broker back in every ISR"
    )
    if enabled:
        wait_until(
            lambda: all(_leaders(cluster)[p][0] == victim for p in mine),
            30,
            "the restarted broker to lead its preferred partitions again",
        )
        assert all(leader == preferred for leader, preferred, _ in _leaders(cluster).values())
    else:
        # Several check intervals later nothing has moved: leadership stays where failover put it.
        with pytest.raises(AssertionError):
            wait_until(lambda: any(_leaders(cluster)[p][0] == victim for p in mine), 5, "any leadership back")
