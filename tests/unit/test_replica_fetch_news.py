"""A follower's idle fetch waits long at the leader (REPLICA_FETCH_IDLE_MAX_WAIT_MS), naming
the partitions it follows. A partition that the leader starts leading for it meanwhile (a new
topic) is news that fetch does not ask for: the leader answers it early, so the follower's next
fetch names the partition and its first records are not held up by the long wait."""

import asyncio

from raftlog.metadata import records
from raftlog.replication import requests
from raftlog.v1 import replication_pb2
from tests.unit.replica_manager_harness import CLUSTER_ID, FakeStateMachine, make_manager, register

IDLE = b"I" * 16
NEW = b"N" * 16
NAMED_ELSEWHERE = b"E" * 16


def idle_fetch(broker_epoch: int, *topic_ids: bytes, max_wait_ms: int = 30_000) -> replication_pb2.ReplicaFetchRequest:
    return replication_pb2.ReplicaFetchRequest(
        cluster_id=CLUSTER_ID,
        replica_id=2,
        broker_epoch=broker_epoch,
        max_wait_ms=max_wait_ms,  # 30 s: never reached in this test, which would fail waiting for it
        max_bytes=1 << 20,
        partitions=[
            replication_pb2.ReplicaFetchPartition(
                topic_id=topic_id, partition=0, fetch_offset=0, last_fetched_epoch=-1, current_leader_epoch=0
            )
            for topic_id in topic_ids
        ],
    )


async def turns_until_done(task: asyncio.Task, most: int = 200) -> int | None:
    for turn in range(most):
        if task.done():
            return turn
        await asyncio.sleep(0)
    return None


def test_records_on_a_partition_the_waiting_fetch_does_not_name_answer_it_early():
    async def scenario():
        state_machine = FakeStateMachine()
        register(state_machine, 1)
        follower_epoch = register(state_machine, 2)
        for name, topic_id in (("idle", IDLE), ("elsewhere", NAMED_ELSEWHERE)):
            state_machine.apply(records.topic(name, topic_id), records.partition(topic_id, 0, [1, 2], 1))
        leader = make_manager(1, state_machine, environ={"RAFTLOG_REPLICA_FETCH_WAIT_MAX_MS": "0"})
        await leader.reconcile()
        # The follower's other loop has named "elsewhere" already (it has it): not news.
        await requests.replica_fetch(leader, idle_fetch(follower_epoch, NAMED_ELSEWHERE, max_wait_ms=0))

        waiting = asyncio.ensure_future(requests.replica_fetch(leader, idle_fetch(follower_epoch, IDLE)))
        assert await turns_until_done(waiting, 20) is None, "an idle fetch with nothing to answer waits"
        elsewhere = leader.partition_by_name("elsewhere", 0)
        await elsewhere.append_as_leader(b"x", acks=1, timeout_ms=100, min_isr=1)
        assert await turns_until_done(waiting, 20) is None, "news of a partition it names elsewhere is not its own"

        state_machine.apply(records.topic("new", NEW), records.partition(NEW, 0, [1, 2], 1))
        await leader.reconcile()
        new = leader.partition_by_name("new", 0)
        await new.append_as_leader(b"first", acks=1, timeout_ms=100, min_isr=1)
        assert await turns_until_done(waiting) is not None, "the new partition's records wait out the idle fetch"
        response = waiting.result()
        assert [(r.topic_id, r.error_reason) for r in response.results] == [(IDLE, "")]

    asyncio.run(scenario())
