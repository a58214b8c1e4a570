"""Keepalive: a client-streaming call like the Raft transport's, where the server writes nothing,
held open and idle, survives the client's keepalive pings with the servers' keepalive settings
(gRPC's server defaults accept one ping without data per 5 minutes and answer the third early one
with GOAWAY too_many_pings)."""

from __future__ import annotations

import asyncio

import grpc

from raftlog.channels import keepalive_options, server_keepalive_options

PING_MS = 200  # the scale of the real pair (10 s pings), shrunk so that a test sees many pings
STREAM_S = 3.0  # 15 pings: gRPC's defaults GOAWAY on the third
METHOD = "/test.Keepalive/Stream"


async def _stream_outcome(server_options: list) -> str:
    """Holds a stream open and idle for STREAM_S; returns 'ok' or the error it ended with."""

    async def consume(request_iterator, context):
        async for _ in request_iterator:
            pass
        return b"done"

    handler = grpc.method_handlers_generic_handler(
        "test.Keepalive",
        {"Stream": grpc.stream_unary_rpc_method_handler(consume, lambda b: b, lambda b: b)},
    )
    server = grpc.aio.server(options=server_options)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=keepalive_options(PING_MS))

    async def messages():
        # One message, then silence: a Raft stream between two followers, open since an election.
        yield b"x"
        await asyncio.sleep(STREAM_S)

    try:
        call = channel.stream_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        await call(messages())
        return "ok"
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    finally:
        await channel.close()
        await server.stop(None)


def test_server_accepts_the_clients_keepalive_pings_on_a_stream_it_writes_nothing_to():
    assert asyncio.run(_stream_outcome(server_keepalive_options(PING_MS // 2))) == "ok"
