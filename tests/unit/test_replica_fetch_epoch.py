"""ReplicaFetch is fenced by the follower's broker epoch (KIP-903): a fetch from an earlier
incarnation of a replica, or from anyone claiming to be it, must never move the high watermark."""

import asyncio

import pytest

from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.replication import requests
from raftlog.v1 import replication_pb2
from tests.unit.replica_manager_harness import (
    CLUSTER_ID,
    FakeStateMachine,
    make_manager,
    register,
)

TOPIC_ID = b"E" * 16


def fetch_request(replica_id: int, broker_epoch: int, fetch_offset: int) -> replication_pb2.ReplicaFetchRequest:
    return replication_pb2.ReplicaFetchRequest(
        cluster_id=CLUSTER_ID,
        replica_id=replica_id,
        broker_epoch=broker_epoch,
        max_wait_ms=0,
        max_bytes=1 << 20,
        partitions=[
            replication_pb2.ReplicaFetchPartition(
                topic_id=TOPIC_ID, partition=0, fetch_offset=fetch_offset, last_fetched_epoch=0, current_leader_epoch=0
            )
        ],
    )


def test_a_fetch_with_a_stale_broker_epoch_is_refused_and_moves_nothing():
    async def scenario():
        state_machine = FakeStateMachine()
        register(state_machine, 1)
        old_epoch = register(state_machine, 2)
        new_epoch = register(state_machine, 2)  # broker 2 restarted: a new incarnation
        assert new_epoch > old_epoch
        state_machine.apply(records.topic("t", TOPIC_ID), records.partition(TOPIC_ID, 0, [1, 2], 1))
        leader = make_manager(1, state_machine)
        await leader.reconcile()
        partition = leader.partition_by_name("t", 0)
        for value in (b"a", b"b", b"c"):
            await partition.append_as_leader(value, acks=1, timeout_ms=100, min_isr=1)
        assert partition.high_watermark == 0  # broker 2 is in the ISR and has fetched nothing

        for epoch in (old_epoch, new_epoch + 100):  # an earlier incarnation; an epoch never registered
            with pytest.raises(RaftlogError) as refused:
                await requests.replica_fetch(leader, fetch_request(2, epoch, fetch_offset=3))
            assert refused.value.reason == "STALE_BROKER_EPOCH"
            assert partition.high_watermark == 0, "a refused fetch moved the high watermark"
            assert partition.followers[2].log_end_offset == 0

        response = await requests.replica_fetch(leader, fetch_request(2, new_epoch, fetch_offset=3))
        assert not response.results[0].error_reason
        assert partition.high_watermark == 3

    asyncio.run(scenario())
