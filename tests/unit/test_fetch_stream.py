"""FetchStream, a follower's fetches on one open call: every way the call can end (the leader
gone, an error status, the deadline) is an error for that fetch, never a crash of the fetcher,
and the next fetch opens a new call."""

import asyncio

import grpc
import pytest

from raftlog.api.status import abort
from raftlog.channels import error_from_rpc
from raftlog.errors import RaftlogError
from raftlog.replication.fetcher import FetchStream
from raftlog.v1 import replication_pb2, replication_pb2_grpc


class Leader(replication_pb2_grpc.ReplicationServiceServicer):
    """Answers each fetch with its replica id as the high watermark, or as told."""

    def __init__(self):
        self.calls = 0  # ReplicaFetchStream calls opened
        self.error: RaftlogError | None = None
        self.hang = False

    async def ReplicaFetchStream(self, request_iterator, context):  # noqa: N802 - the gRPC method name
        self.calls += 1
        async for request in request_iterator:
            if self.error is not None:
                await abort(context, self.error)
            if self.hang:
                await asyncio.sleep(3600)
            result = replication_pb2.ReplicaFetchResult(high_watermark=request.replica_id)
            await context.write(replication_pb2.ReplicaFetchResponse(results=[result]))


async def _serve(leader: Leader, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    replication_pb2_grpc.add_ReplicationServiceServicer_to_server(leader, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


def _fetch(replica_id: int) -> replication_pb2.ReplicaFetchRequest:
    return replication_pb2.ReplicaFetchRequest(replica_id=replica_id)


async def _answered(stream: FetchStream, replica_id: int) -> int:
    return (await stream.fetch(_fetch(replica_id), 5.0)).results[0].high_watermark


def _run(scenario) -> None:
    """Runs scenario(leader, stream, restart) against a leader served on a free port; restart()
    stops the server and returns a function that serves the leader again on the same port."""

    async def main():
        leader = Leader()
        servers = [None]
        servers[0], port = await _serve(leader)

        async def serve_again():
            servers[0], _ = await _serve(leader, port)

        async def stop():
            await servers[0].stop(0)
            return serve_again

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = FetchStream(channel)
            try:
                await scenario(leader, stream, stop)
            finally:
                stream.close()
        await servers[0].stop(0)

    asyncio.run(main())


def test_fetches_share_one_call_and_each_gets_its_own_answer():
    async def scenario(leader, stream, stop):
        assert [await _answered(stream, i) for i in (1, 2, 3)] == [1, 2, 3]
        assert leader.calls == 1

    _run(scenario)


def test_a_leader_that_went_away_is_an_rpc_error_and_the_next_fetch_reconnects():
    async def scenario(leader, stream, stop):
        assert await _answered(stream, 1) == 1
        serve_again = await stop()  # the open call ends behind the follower's back
        await asyncio.sleep(0.2)  # it has ended by the next fetch (grpcio then refuses the write)
        with pytest.raises(grpc.RpcError) as failed:
            await _answered(stream, 2)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        await serve_again()
        for _ in range(50):  # bounded: the channel reconnects with its own backoff
            try:
                assert await _answered(stream, 3) == 3
                break
            except grpc.RpcError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the follower never fetched from the restarted leader")
        assert leader.calls >= 2

    _run(scenario)


def test_an_error_status_names_its_reason_and_the_next_fetch_opens_a_new_call():
    async def scenario(leader, stream, stop):
        leader.error = RaftlogError("STALE_BROKER_EPOCH", "broker 2 registered again")
        with pytest.raises(grpc.RpcError) as failed:
            await _answered(stream, 2)
        assert error_from_rpc(failed.value).reason == "STALE_BROKER_EPOCH"
        leader.error = None
        assert await _answered(stream, 2) == 2
        assert leader.calls == 2

    _run(scenario)


def test_no_answer_within_the_deadline_is_a_timeout_and_abandons_the_call():
    async def scenario(leader, stream, stop):
        leader.hang = True
        with pytest.raises(TimeoutError):
            await stream.fetch(_fetch(1), 0.2)
        leader.hang = False
        assert await _answered(stream, 1) == 1  # not the hung fetch's answer: a new call
        assert leader.calls == 2

    _run(scenario)
