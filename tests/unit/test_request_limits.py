"""One request must not take a node down (issue 9 §6): data-plane requests name a bounded number
of partitions, and long loops over partitions give the event loop a turn (heartbeats go on)."""

import asyncio

import pytest

from raftlog.errors import RaftlogError
from raftlog.limits import (
    MAX_PARTITIONS_PER_DATA_REQUEST,
    RECONCILE_CHUNK_PARTITIONS,
    YIELD_EVERY_PARTITIONS,
)
from raftlog.metadata import records
from raftlog.replication import requests
from raftlog.v1 import broker_pb2
from tests.unit.replica_manager_harness import FakeStateMachine, make_manager, register

TOPIC_ID = b"L" * 16


class LoopTurns:
    """Counts event-loop turns taken by other tasks while something runs."""

    def __init__(self) -> None:
        self.turns = 0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.turns += 1

    def __enter__(self):
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc) -> None:
        self._task.cancel()


async def cluster_with_topic(partitions: int):
    state_machine = FakeStateMachine()
    for broker_id in (1, 2):
        register(state_machine, broker_id)
    state_machine.apply(
        records.topic("t", TOPIC_ID), *(records.partition(TOPIC_ID, i, [1], 1) for i in range(partitions))
    )
    return state_machine, make_manager(1, state_machine)


@pytest.mark.parametrize("call", ["produce", "fetch", "list_offsets"])
def test_a_request_naming_too_many_partitions_is_refused(call):
    async def scenario():
        _, manager = await cluster_with_topic(1)
        count = MAX_PARTITIONS_PER_DATA_REQUEST + 1
        request = {
            "produce": lambda: broker_pb2.ProduceRequest(
                acks=1, partitions=[broker_pb2.PartitionRecords(topic="t", partition=i) for i in range(count)]
            ),
            "fetch": lambda: broker_pb2.FetchRequest(
                partitions=[broker_pb2.FetchPartition(topic="t", partition=i) for i in range(count)]
            ),
            "list_offsets": lambda: broker_pb2.ListOffsetsRequest(
                partitions=[broker_pb2.ListOffsetsPartition(topic="t", partition=i) for i in range(count)]
            ),
        }[call]()
        with pytest.raises(RaftlogError) as refused:
            await getattr(requests, call)(manager, request)
        assert refused.value.reason == "INVALID_REQUEST"
        assert str(MAX_PARTITIONS_PER_DATA_REQUEST) in refused.value.message

    asyncio.run(scenario())


def test_a_fetch_of_many_partitions_gives_the_event_loop_turns():
    async def scenario():
        count = MAX_PARTITIONS_PER_DATA_REQUEST
        _, manager = await cluster_with_topic(count)
        await manager.reconcile()
        request = broker_pb2.FetchRequest(
            max_wait_ms=0,
            partitions=[broker_pb2.FetchPartition(topic="t", partition=i, fetch_offset=0) for i in range(count)],
        )
        with LoopTurns() as others:
            response = await requests.fetch(manager, request)
        assert len(response.results) == count and not any(r.error_reason for r in response.results)
        assert others.turns >= count // YIELD_EVERY_PARTITIONS - 1, others.turns

    asyncio.run(scenario())


def test_reconciling_a_big_topic_gives_the_event_loop_turns():
    """Creating (opening the logs of) and deleting thousands of partitions is done in chunks."""

    async def scenario():
        count = 3_000
        state_machine, manager = await cluster_with_topic(count)
        with LoopTurns() as others:
            await manager.reconcile()
        assert len(manager.partitions) == count
        assert others.turns >= count // RECONCILE_CHUNK_PARTITIONS - 1, f"opening: {others.turns} turns"

        state_machine.apply(records.remove_topic(TOPIC_ID))
        with LoopTurns() as others:
            await manager.reconcile()
        assert not manager.partitions
        assert others.turns >= count // RECONCILE_CHUNK_PARTITIONS - 1, f"deleting: {others.turns} turns"

    asyncio.run(scenario())


def test_a_compressed_batch_inflating_beyond_max_message_bytes_is_refused_on_produce():
    from raftlog.log.record_batch import encode_batch

    async def scenario():
        _, manager = await cluster_with_topic(1)
        await manager.reconcile()
        max_bytes = manager.topic_settings("t").log.max_message_bytes
        bomb = encode_batch([(None, bytes(4 * max_bytes), None, 0)], compression="zstd")
        response = await requests.produce(
            manager,
            broker_pb2.ProduceRequest(
                acks=1, partitions=[broker_pb2.PartitionRecords(topic="t", partition=0, records=bomb)]
            ),
        )
        assert response.results[0].error_reason == "MESSAGE_TOO_LARGE", response.results[0]
        assert manager.partition_by_name("t", 0).log.log_end_offset == 0, "nothing was written"

    asyncio.run(scenario())
