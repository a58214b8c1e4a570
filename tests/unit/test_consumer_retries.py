"""The consumer retries what the errors say is retriable (REQUEST_TIMED_OUT, NETWORK_EXCEPTION),
as the producer and the admin client do, instead of failing the user's call."""

import asyncio

import grpc
import pytest

from raftlog.client import AsyncConsumer, TopicPartition
from raftlog.errors import RaftlogError
from tests.unit.stub_broker import StubBroker


@pytest.mark.parametrize(
    "failure",
    [
        grpc.StatusCode.DEADLINE_EXCEEDED,  # the client sees REQUEST_TIMED_OUT
        grpc.StatusCode.CANCELLED,  # NETWORK_EXCEPTION: the call was cut off
        RaftlogError("REQUEST_TIMED_OUT", "this node has not applied the metadata asked for yet"),
    ],
    ids=["deadline", "cancelled", "request-timed-out"],
)
def test_list_offsets_failures_that_are_retriable_are_retried(failure):
    async def scenario():
        broker = StubBroker({"t": 1})
        await broker.start()
        broker.list_offsets_failures = [failure, failure]
        consumer = AsyncConsumer(broker.address, request_timeout_ms=10_000)
        try:
            tp = TopicPartition("t", 0)
            consumer.assign([tp])
            assert await consumer.position(tp) == 0
            assert broker.list_offsets_failures == []  # both failures were met, and retried
        finally:
            await consumer.close()
            await broker.stop()

    asyncio.run(scenario())


def test_a_failure_that_is_not_retriable_reaches_the_caller():
    async def scenario():
        broker = StubBroker({"t": 1})
        await broker.start()
        broker.list_offsets_failures = [RaftlogError("INVALID_REQUEST", "no")]
        consumer = AsyncConsumer(broker.address)
        try:
            tp = TopicPartition("t", 0)
            consumer.assign([tp])
            with pytest.raises(RaftlogError) as info:
                await consumer.position(tp)
            assert info.value.reason == "INVALID_REQUEST"
        finally:
            await consumer.close()
            await broker.stop()

    asyncio.run(scenario())
