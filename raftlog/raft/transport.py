"""Raft messages over gRPC: one client stream per peer, batches drained from a per-peer queue.

Sending never blocks the Raft loop: messages go into the peer's queue and a sender task
streams them. Raft tolerates loss, so a full queue drops its oldest messages and a broken
stream is simply re-opened after a short backoff. Every batch names its cluster: a batch
for another cluster is refused with FAILED_PRECONDITION (INCONSISTENT_CLUSTER_ID).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import grpc

from raftlog.channels import aio_channel
from raftlog.errors import REASON_METADATA_KEY
from raftlog.raft.messages import Entry, Message, MsgType, Snapshot
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import raft_pb2, raft_pb2_grpc

log = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES = 10_000
RECONNECT_BACKOFF_S = 0.05
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a whole snapshot goes in one message
KEEPALIVE_OPTIONS = [("grpc.keepalive_time_ms", 10_000)]


def to_proto(msg: Message) -> raft_pb2.RaftMessage:
    proto = raft_pb2.RaftMessage(
        type=int(msg.type), to=msg.to, term=msg.term, log_term=msg.log_term, index=msg.index,
        entries=[raft_pb2.RaftEntry(term=e.term, index=e.index, data=e.data) for e in msg.entries],
        commit=msg.commit, reject=msg.reject, reject_hint=msg.reject_hint, context=msg.context,
        transfer=msg.transfer,
    )
    setattr(proto, "from", msg.frm)
    if msg.snapshot is not None:
        proto.snapshot.CopyFrom(raft_pb2.RaftSnapshot(index=msg.snapshot.index, term=msg.snapshot.term,
                                                      data=msg.snapshot.data))
    return proto


def from_proto(proto: raft_pb2.RaftMessage) -> Message:
    snapshot = None
    if proto.HasField("snapshot"):
        snapshot = Snapshot(proto.snapshot.index, proto.snapshot.term, proto.snapshot.data)
    return Message(
        MsgType(proto.type), proto.to, getattr(proto, "from"), proto.term, proto.log_term, proto.index,
        tuple(Entry(e.term, e.index, e.data) for e in proto.entries), proto.commit, proto.reject,
        proto.reject_hint, snapshot, proto.context, proto.transfer,
    )


class _RaftServicer(raft_pb2_grpc.RaftServiceServicer):
    def __init__(self, transport: RaftTransport):
        self._transport = transport

    async def Send(self, request_iterator, context):
        async for batch in request_iterator:
            if batch.cluster_id != self._transport.cluster_id:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"INCONSISTENT_CLUSTER_ID: node {batch.from_node} is in cluster {batch.cluster_id!r}, "
                    f"this node is in {self._transport.cluster_id!r}",
                    trailing_metadata=((REASON_METADATA_KEY, "INCONSISTENT_CLUSTER_ID"),),
                )
            if batch.from_node not in self._transport.peers:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"node {batch.from_node} is not a voter")
            self._transport.deliver([from_proto(m) for m in batch.messages])
        return raft_pb2.RaftAck()


class _Peer:
    def __init__(self, node_id: int, address: str):
        self.node_id = node_id
        self.address = address
        self.queue: deque[Message] = deque()
        self.ready = asyncio.Event()
        self.task: asyncio.Task | None = None


class RaftTransport:
    def __init__(self, node_id: int, cluster_id: str, peers: dict[int, str],
                 deliver: Callable[[list[Message]], None], tasks: TaskSupervisor):
        self.node_id = node_id
        self._supervisor = tasks
        self.cluster_id = cluster_id
        self.peers = {peer_id: _Peer(peer_id, address) for peer_id, address in peers.items() if peer_id != node_id}
        self.deliver = deliver
        self.unreachable: Callable[[int], None] | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        raft_pb2_grpc.add_RaftServiceServicer_to_server(_RaftServicer(self), server)

    def start(self) -> None:
        for peer in self.peers.values():
            peer.task = self._supervisor.spawn(self._stream_to(peer), name=f"raft-send-{peer.node_id}", critical=True)

    async def stop(self) -> None:
        tasks = [p.task for p in self.peers.values() if p.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def send(self, messages: list[Message]) -> None:
        for msg in messages:
            peer = self.peers.get(msg.to)
            if peer is None:
                continue
            peer.queue.append(msg)
            if len(peer.queue) > MAX_QUEUED_MESSAGES:
                peer.queue.popleft()
            peer.ready.set()

    async def flush(self, timeout_s: float) -> None:
        """Waits (bounded) until every queued message has been handed to its stream."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while any(p.queue for p in self.peers.values()) and loop.time() < deadline:
            await asyncio.sleep(0.005)

    async def _batches(self, peer: _Peer):
        while True:
            if not peer.queue:
                peer.ready.clear()
                await peer.ready.wait()
            messages = [to_proto(peer.queue.popleft()) for _ in range(len(peer.queue))]
            yield raft_pb2.RaftMessageBatch(cluster_id=self.cluster_id, from_node=self.node_id, messages=messages)

    async def _stream_to(self, peer: _Peer) -> None:
        while True:
            channel = aio_channel(peer.address, MAX_MESSAGE_BYTES, KEEPALIVE_OPTIONS)
            try:
                stub = raft_pb2_grpc.RaftServiceStub(channel)
                await stub.Send(self._batches(peer))
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    log.error("node %d refused our messages: %s", peer.node_id, exc.details())
                else:
                    log.debug("stream to node %d broke: %s", peer.node_id, exc.code())
            finally:
                await channel.close()
            peer.queue.clear()  # stale by now; Raft resends what matters
            await asyncio.sleep(RECONNECT_BACKOFF_S)
