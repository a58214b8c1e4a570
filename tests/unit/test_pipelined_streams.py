"""Pipelined streams (api/pipelined.py, client/pipelined.py): many requests on one call, each
answered by correlation id, failures in the answer, calls reopened after they end, and a broker
without the stream asked with unary calls."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from raftlog.api.pipelined import serve_pipelined
from raftlog.api.status import rpc
from raftlog.channels import aio_channel
from raftlog.client.pipelined import PRODUCE, PipelinedCall
from raftlog.errors import Errors, RaftlogError
from raftlog.limits import PIPELINED_MAX_IN_FLIGHT_PER_STREAM
from raftlog.v1 import broker_pb2, broker_pb2_grpc


def _request(tag: str, timeout_ms: int = 0) -> broker_pb2.ProduceRequest:
    """The test's requests name what the broker should do in their one partition's topic."""
    return broker_pb2.ProduceRequest(
        acks=-1, timeout_ms=timeout_ms, partitions=[broker_pb2.PartitionRecords(topic=tag, partition=0)]
    )


class ScriptedBroker(broker_pb2_grpc.BrokerServiceServicer):
    """Answers `wait:<ms>` after that many ms, `fail:<reason>` with that error (leader 7),
    `block` never (until released); anything else at once. The answer's base offset is the
    request's timeout_ms, so each answer can be matched to its request."""

    def __init__(self):
        self.serving = 0
        self.most_serving = 0
        self.release = asyncio.Event()
        self.unary_calls = 0
        self.calls_opened = 0
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def serve(self, request: broker_pb2.ProduceRequest) -> broker_pb2.ProduceResponse:
        self.serving += 1
        self.most_serving = max(self.most_serving, self.serving)
        try:
            tag = request.partitions[0].topic
            if tag.startswith("wait:"):
                await asyncio.sleep(int(tag[5:]) / 1000.0)
            elif tag.startswith("fail:"):
                raise RaftlogError(tag[5:], "scripted", leader_id=7)
            elif tag == "block":
                await self.release.wait()
            return broker_pb2.ProduceResponse(
                results=[broker_pb2.PartitionProduceResult(topic=tag, partition=0, base_offset=request.timeout_ms)]
            )
        finally:
            self.serving -= 1

    @rpc("Produce")
    async def Produce(self, request, context):
        self.unary_calls += 1
        return await self.serve(request)

    async def start(self, port: int = 0) -> str:
        self._server = grpc.aio.server()
        broker_pb2_grpc.add_BrokerServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        await self._server.start()
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        assert self._server is not None
        await self._server.stop(None)


class StreamingBroker(ScriptedBroker):
    async def ProduceStream(self, request_iterator, context):
        self.calls_opened += 1
        async for answer in serve_pipelined(
            context, request_iterator, self.serve, broker_pb2.ProduceStreamResponse, None, "Produce"
        ):
            yield answer


@contextlib.asynccontextmanager
async def _connected(broker: ScriptedBroker):
    """A started broker and a PipelinedCall of Produce to it; all closed after."""
    address = await broker.start()
    channel = aio_channel(address)
    call = PipelinedCall(channel, PRODUCE)
    try:
        yield call
    finally:
        broker.release.set()
        await call.close()
        await channel.close()
        await broker.stop()


def _run(scenario):
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_requests_in_flight_together_are_each_answered_with_their_own_response():
    async def scenario():
        broker = StreamingBroker()
        async with _connected(broker) as call:
            # Later requests answered first: each still gets its own response.
            delays_ms = [40, 30, 20, 10, 0] * 4
            answers = await asyncio.gather(
                *(call.request(_request(f"wait:{d}", timeout_ms=i), 10.0) for i, d in enumerate(delays_ms))
            )
            assert [a.results[0].base_offset for a in answers] == list(range(len(delays_ms)))
            assert [a.results[0].topic for a in answers] == [f"wait:{d}" for d in delays_ms]
            assert broker.most_serving > 1, "requests on the stream were served one after another"
            assert broker.calls_opened == 1 and broker.unary_calls == 0

    _run(scenario)


def test_a_failed_request_gets_its_error_and_the_stream_goes_on():
    async def scenario():
        broker = StreamingBroker()
        async with _connected(broker) as call:
            failed, served = await asyncio.gather(
                call.request(_request("fail:NOT_LEADER_OR_FOLLOWER"), 10.0),
                call.request(_request("wait:20", timeout_ms=5), 10.0),
                return_exceptions=True,
            )
            assert isinstance(failed, RaftlogError)
            assert failed.error is Errors.NOT_LEADER_OR_FOLLOWER and failed.leader_id == 7
            assert failed.message == "scripted" and failed.retriable
            assert served.results[0].base_offset == 5
            with pytest.raises(RaftlogError) as unknown:
                await call.request(_request("fail:NO_SUCH_ERROR_NAME"), 10.0)
            assert unknown.value.error is Errors.UNKNOWN_SERVER_ERROR and "NO_SUCH_ERROR_NAME" in unknown.value.message
            assert (await call.request(_request("after", timeout_ms=9), 10.0)).results[0].base_offset == 9
            assert broker.calls_opened == 1, "a request's failure ended the stream"

    _run(scenario)


def test_requests_waiting_on_a_broker_that_went_away_fail_retriably_and_the_next_opens_a_new_call():
    async def scenario():
        broker = StreamingBroker()
        async with _connected(broker) as call:
            waiting = asyncio.ensure_future(call.request(_request("block"), 10.0))
            for _ in range(200):
                if broker.serving:
                    break
                await asyncio.sleep(0.01)
            assert broker.serving == 1
            await broker.stop()
            with pytest.raises(RaftlogError) as cut:
                await waiting
            assert cut.value.retriable, cut.value
            restarted = StreamingBroker()
            await restarted.start(broker.port)
            try:
                for _ in range(100):  # the channel reconnects with a backoff: retried as a producer would
                    try:
                        answer = await call.request(_request("again", timeout_ms=3), 10.0)
                        break
                    except RaftlogError as exc:
                        assert exc.retriable, exc
                        await asyncio.sleep(0.05)
                assert answer.results[0].base_offset == 3 and restarted.calls_opened == 1
            finally:
                await restarted.stop()

    _run(scenario)


def test_an_unanswered_request_times_out_and_the_next_goes_on_a_fresh_call():
    async def scenario():
        broker = StreamingBroker()
        async with _connected(broker) as call:
            with pytest.raises(RaftlogError) as late:
                await call.request(_request("block"), 0.2)
            assert late.value.error is Errors.REQUEST_TIMED_OUT
            assert (await call.request(_request("next", timeout_ms=4), 10.0)).results[0].base_offset == 4
            assert broker.calls_opened == 2

    _run(scenario)


def test_a_broker_without_the_stream_is_asked_with_unary_calls():
    async def scenario():
        broker = ScriptedBroker()  # an older broker: no ProduceStream
        async with _connected(broker) as call:
            answers = await asyncio.gather(*(call.request(_request("old", timeout_ms=i), 10.0) for i in range(3)))
            assert [a.results[0].base_offset for a in answers] == [0, 1, 2]
            assert broker.unary_calls == 3
            with pytest.raises(RaftlogError) as failed:
                await call.request(_request("fail:INVALID_REQUIRED_ACKS"), 10.0)
            assert failed.value.error is Errors.INVALID_REQUIRED_ACKS

    _run(scenario)


def test_one_stream_serves_at_most_its_cap_of_requests_at_once():
    async def scenario():
        broker = StreamingBroker()
        async with _connected(broker) as call:
            count = PIPELINED_MAX_IN_FLIGHT_PER_STREAM + 8
            waiting = [asyncio.ensure_future(call.request(_request("block", timeout_ms=i), 30.0)) for i in range(count)]
            for _ in range(300):
                if broker.serving >= PIPELINED_MAX_IN_FLIGHT_PER_STREAM:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # what the cap holds back would have started by now
            assert broker.serving == PIPELINED_MAX_IN_FLIGHT_PER_STREAM
            broker.release.set()
            answers = await asyncio.gather(*waiting)
            assert sorted(a.results[0].base_offset for a in answers) == list(range(count))
            assert broker.most_serving == PIPELINED_MAX_IN_FLIGHT_PER_STREAM

    _run(scenario)
