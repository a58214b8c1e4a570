"""Raft messages over gRPC: one client stream per peer, batches drained from a per-peer queue.

Sending never blocks the Raft loop: messages go into the peer's queue and a sender task
streams them. Raft tolerates loss, so a full queue drops its oldest messages and a broken
stream is simply re-opened after a short backoff.

Size: no message may exceed `max_message_bytes` (raftlog/limits.py; the receiving server
refuses larger ones). The core keeps each append within it; the transport packs queued
messages into batches up to it, and sends a snapshot as chunks (RaftSnapshot offset/more,
InstallSnapshot as in the Raft paper) that the receiving side of the stream assembles before
it hands the whole snapshot to the core, which stays unaware of chunks.

Every node names its own address in its batches (`from_address`); a node that gets a batch from
a node it does not know (an observer, i.e. a broker-only node, or a voter added by a change this
node has not seen yet) adds it as a peer (at most RAFT_MAX_OBSERVERS of them), so its answers reach it.

Refused batches: another cluster's (FAILED_PRECONDITION, INCONSISTENT_CLUSTER_ID); a sender that
is not a voter and gives no address (PERMISSION_DENIED); on a mutual-TLS listener, a stream whose first batch names a
node the caller's certificate does not (PERMISSION_DENIED, CLUSTER_AUTHORIZATION_FAILED); a batch or message whose sender is not the node that opened
the stream, a message for another node, an unknown message type (INVALID_ARGUMENT,
INVALID_REQUEST). The stream ends; nothing of the refused batch reaches the core.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator

import grpc

from raftlog.channels import KEEPALIVE_OPTIONS, aio_channel
from raftlog.errors import REASON_METADATA_KEY, RaftlogError
from raftlog.limits import MAX_MESSAGE_BYTES, RAFT_MAX_OBSERVERS, raft_payload_bytes
from raftlog.limits import RAFT_MAX_QUEUED_MESSAGES as MAX_QUEUED_MESSAGES
from raftlog.limits import RAFT_RECONNECT_BACKOFF_S as RECONNECT_BACKOFF_S
from raftlog.raft.messages import NO_NODE, Entry, Message, MsgType, Snapshot
from raftlog.tasks import TaskSupervisor
from raftlog.tls import ClientSecurity, PeerAuthenticator
from raftlog.v1 import raft_pb2, raft_pb2_grpc

log = logging.getLogger(__name__)

KNOWN_TYPES = frozenset(int(t) for t in MsgType)
# A message's own framing inside a batch: its field tag and length prefix.
MESSAGE_FRAMING_BYTES = 6
# A snapshot chunk's fields besides its data (type, to, from, term, commit, index, snapshot term,
# offset, more: at most ~90 bytes of tags and varints), with room to spare.
SNAPSHOT_CHUNK_FIELDS_BYTES = 256


def to_proto(msg: Message) -> raft_pb2.RaftMessage:
    proto = raft_pb2.RaftMessage(
        type=int(msg.type),
        to=msg.to,
        term=msg.term,
        log_term=msg.log_term,
        index=msg.index,
        entries=[raft_pb2.RaftEntry(term=e.term, index=e.index, data=e.data) for e in msg.entries],
        commit=msg.commit,
        reject=msg.reject,
        reject_hint=msg.reject_hint,
        context=msg.context,
        transfer=msg.transfer,
    )
    if msg.type == MsgType.FETCH_RESP:  # only there: the other messages stay as small as they were
        proto.leader, proto.leader_address = msg.leader, msg.leader_address
    setattr(proto, "from", msg.frm)
    if msg.snapshot is not None:
        proto.snapshot.CopyFrom(
            raft_pb2.RaftSnapshot(
                index=msg.snapshot.index, term=msg.snapshot.term, data=msg.snapshot.data, config=msg.snapshot.config
            )
        )
    return proto


def snapshot_chunks(msg: Message, chunk_bytes: int) -> Iterator[raft_pb2.RaftMessage]:
    """A SNAPSHOT message as protos of at most chunk_bytes of snapshot data each, made one at a
    time (a large snapshot is not copied into all its chunks at once)."""
    snapshot = msg.snapshot
    assert snapshot is not None, f"a SNAPSHOT message to {msg.to} carries no snapshot"
    data = memoryview(snapshot.data)
    offset = 0
    while True:
        chunk = bytes(data[offset : offset + chunk_bytes])
        more = offset + len(chunk) < len(data)
        proto = raft_pb2.RaftMessage(
            type=int(msg.type),
            to=msg.to,
            term=msg.term,
            commit=msg.commit,
            snapshot=raft_pb2.RaftSnapshot(
                index=snapshot.index,
                term=snapshot.term,
                data=chunk,
                offset=offset,
                more=more,
                config=snapshot.config if offset == 0 else b"",
            ),
        )
        setattr(proto, "from", msg.frm)
        yield proto
        if not more:
            return
        offset += len(chunk)


def from_proto(proto: raft_pb2.RaftMessage, snapshot: Snapshot | None = None) -> Message:
    if snapshot is None and proto.HasField("snapshot"):
        snapshot = Snapshot(proto.snapshot.index, proto.snapshot.term, proto.snapshot.data, proto.snapshot.config)
    return Message(
        MsgType(proto.type),
        proto.to,
        getattr(proto, "from"),
        proto.term,
        proto.log_term,
        proto.index,
        tuple(Entry(e.term, e.index, e.data) for e in proto.entries),
        proto.commit,
        proto.reject,
        proto.reject_hint,
        snapshot,
        proto.context,
        proto.transfer,
        proto.leader if proto.type == MsgType.FETCH_RESP else NO_NODE,
        proto.leader_address,
    )


class SnapshotAssembly:
    """The chunks of one snapshot arriving on one stream, in order (a stream is ordered and
    lossless; a new snapshot starts at offset 0 and replaces an unfinished one)."""

    def __init__(self) -> None:
        self._key: tuple[int, int, int] | None = None  # (message term, snapshot index, snapshot term)
        self._parts: list[bytes] = []
        self._size = 0
        self._config = b""  # from the first chunk

    def add(self, proto: raft_pb2.RaftMessage) -> Message | None:
        """The whole SNAPSHOT message once its last chunk is in; None before."""
        chunk = proto.snapshot
        key = (proto.term, chunk.index, chunk.term)
        if chunk.offset == 0:
            self._key, self._parts, self._size, self._config = key, [], 0, chunk.config
        elif key != self._key or chunk.offset != self._size:
            # Not the continuation of what we hold (we never saw its start): drop both. The
            # leader sends the snapshot again when its answer does not come.
            self._key, self._parts, self._size = None, [], 0
            return None
        self._parts.append(chunk.data)
        self._size += len(chunk.data)
        if chunk.more:
            return None
        data = b"".join(self._parts)
        self._key, self._parts, self._size = None, [], 0
        return from_proto(proto, Snapshot(chunk.index, chunk.term, data, self._config))


class _RaftServicer(raft_pb2_grpc.RaftServiceServicer):
    def __init__(self, transport: RaftTransport, authenticator: PeerAuthenticator | None):
        self._transport = transport
        self._authenticator = authenticator

    async def Send(self, request_iterator, context):
        sender: int | None = None  # the node that opened this stream: its first batch names it
        assembly = SnapshotAssembly()
        async for batch in request_iterator:
            if batch.cluster_id != self._transport.cluster_id:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"INCONSISTENT_CLUSTER_ID: node {batch.from_node} is in cluster {batch.cluster_id!r}, "
                    f"this node is in {self._transport.cluster_id!r}",
                    trailing_metadata=((REASON_METADATA_KEY, "INCONSISTENT_CLUSTER_ID"),),
                )
            if batch.from_node not in self._transport.peers and not self._transport.add_observer(
                batch.from_node, batch.from_address
            ):
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"node {batch.from_node} is not a voter and gives no address to answer it at"
                    if not batch.from_address
                    else f"node {batch.from_node}: this node already answers {RAFT_MAX_OBSERVERS} observers",
                )
            if sender is None:
                sender = batch.from_node
                self._transport.controller_role[sender] = batch.controller
                if self._authenticator is not None:
                    try:
                        self._authenticator.check_node(context, sender, "a Raft stream")
                    except RaftlogError as exc:  # a certificate that is not the sender's: nothing reaches the core
                        await context.abort(
                            grpc.StatusCode.PERMISSION_DENIED,
                            f"{exc.reason}: {exc.message}",
                            trailing_metadata=((REASON_METADATA_KEY, exc.reason),),
                        )
            problem = self._transport.check_batch(batch, sender)
            if problem is not None:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"INVALID_REQUEST: {problem}",
                    trailing_metadata=((REASON_METADATA_KEY, "INVALID_REQUEST"),),
                )
            messages = []
            for proto in batch.messages:
                if proto.type == MsgType.SNAPSHOT:
                    msg = assembly.add(proto)
                    if msg is not None:
                        messages.append(msg)
                else:
                    messages.append(from_proto(proto))
            if messages:
                self._transport.deliver(messages)
        return raft_pb2.RaftAck()


class _Peer:
    def __init__(self, node_id: int, address: str):
        self.node_id = node_id
        self.address = address
        self.queue: deque[Message] = deque()
        self.chunks: Iterator[raft_pb2.RaftMessage] | None = None  # the rest of a snapshot being sent
        self.carry: raft_pb2.RaftMessage | None = None  # did not fit in the last batch: goes first next
        self.ready = asyncio.Event()
        self.task: asyncio.Task | None = None

    def has_pending(self) -> bool:
        return bool(self.queue) or self.chunks is not None or self.carry is not None

    def drop_pending(self) -> None:
        self.queue.clear()
        self.chunks = self.carry = None


class RaftTransport:
    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        peers: dict[int, str],
        deliver: Callable[[list[Message]], None],
        tasks: TaskSupervisor,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        security: ClientSecurity | None = None,
        own_address: str = "",
        controller: bool = True,
    ):
        """peers: the voters (node id -> address); own_address: this node's address, sent with its
        batches so that a node that does not know it (it is an observer, or a new voter) can answer;
        controller: this node has the controller role (sent too: only a controller may be a voter)."""
        self.node_id = node_id
        self.own_address = own_address
        self.controller = controller
        # node id -> whether the node that opened a stream to us said it has the controller role
        self.controller_role: dict[int, bool] = {}
        self._voter_ids = set(peers)
        self._started = False
        self.security = security  # how to reach peers (mutual TLS: this node's certificate)
        self.cluster_id = cluster_id
        self.peers = {peer_id: _Peer(peer_id, address) for peer_id, address in peers.items() if peer_id != node_id}
        self.deliver = deliver
        self._supervisor = tasks
        self.unreachable: Callable[[int], None] | None = None
        self.max_message_bytes = max_message_bytes
        # What a batch's messages may add up to: the limit less the batch's own fields.
        self._batch_budget_bytes = raft_payload_bytes(max_message_bytes)
        # Snapshot bytes per chunk: a chunk and its message's fields fit in one batch on their own.
        self.snapshot_chunk_bytes = self._batch_budget_bytes - SNAPSHOT_CHUNK_FIELDS_BYTES
        assert self.snapshot_chunk_bytes > 0, f"max_message_bytes {max_message_bytes} leaves no room for data"

    def add_to_server(self, server: grpc.aio.Server, authenticator: PeerAuthenticator | None = None) -> None:
        raft_pb2_grpc.add_RaftServiceServicer_to_server(_RaftServicer(self, authenticator), server)

    def check_batch(self, batch: raft_pb2.RaftMessageBatch, sender: int) -> str | None:
        """Why a batch on the stream opened by `sender` is refused, or None."""
        if batch.from_node != sender:
            return f"a batch from node {batch.from_node} on the stream of node {sender}"
        for proto in batch.messages:
            frm = getattr(proto, "from")
            if proto.type not in KNOWN_TYPES:
                return f"unknown Raft message type {proto.type} from node {frm}"
            if frm != sender:
                return f"a message from node {frm} on the stream of node {sender}"
            if proto.to != self.node_id:
                return f"a message for node {proto.to} sent to node {self.node_id}"
            if proto.type == MsgType.SNAPSHOT and not proto.HasField("snapshot"):
                return f"a SNAPSHOT message without a snapshot from node {frm}"
        return None

    def start(self) -> None:
        self._started = True
        for peer in self.peers.values():
            self._start_sender(peer)

    def _start_sender(self, peer: _Peer) -> None:
        peer.task = self._supervisor.spawn(self._stream_to(peer), name=f"raft-send-{peer.node_id}", critical=True)

    def set_voters(self, voters: dict[int, str], own_address: str) -> None:
        """The voter set changed (a configuration entry): reach every voter with an address. A
        removed voter stays a peer: it may follow as an observer."""
        self._voter_ids = set(voters)
        self.own_address = own_address
        for node_id, address in voters.items():
            if address:
                self.add_peer(node_id, address)

    def add_peer(self, node_id: int, address: str) -> None:
        """Reach node_id at address (a new voter, or a leader a FETCH_RESP named)."""
        if node_id == self.node_id or not address:
            return
        peer = self.peers.get(node_id)
        if peer is not None:
            peer.address = address  # the next (re)connect goes there
            return
        peer = self.peers[node_id] = _Peer(node_id, address)
        if self._started:
            self._start_sender(peer)

    def peer_address(self, node_id: int) -> str | None:
        peer = self.peers.get(node_id)
        return peer.address if peer is not None else None

    def add_observer(self, node_id: int, address: str) -> bool:
        """A node outside the voter set opened a stream naming its address: answer it there. False
        when it gave none, or when RAFT_MAX_OBSERVERS observers are known already."""
        if not address or node_id == self.node_id:
            return False
        if sum(1 for peer_id in self.peers if peer_id not in self._voter_ids) >= RAFT_MAX_OBSERVERS:
            return False
        peer = _Peer(node_id, address)
        self.peers[node_id] = peer
        if self._started:
            self._start_sender(peer)
        log.info("node %d: observer %d at %s follows the metadata log", self.node_id, node_id, address)
        return True

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
        while any(p.has_pending() for p in self.peers.values()) and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def _next_proto(self, peer: _Peer) -> raft_pb2.RaftMessage | None:
        if peer.carry is not None:
            carried, peer.carry = peer.carry, None
            return carried
        while True:
            if peer.chunks is not None:
                proto = next(peer.chunks, None)
                if proto is not None:
                    return proto
                peer.chunks = None
            if not peer.queue:
                return None
            msg = peer.queue.popleft()
            if msg.type == MsgType.SNAPSHOT and msg.snapshot is not None:
                peer.chunks = snapshot_chunks(msg, self.snapshot_chunk_bytes)
            else:
                return to_proto(msg)

    def next_batch(self, peer: _Peer) -> raft_pb2.RaftMessageBatch:
        """As many pending messages as fit in one message of max_message_bytes (at least one)."""
        budget = self._batch_budget_bytes
        messages: list[raft_pb2.RaftMessage] = []
        while (proto := self._next_proto(peer)) is not None:
            size = proto.ByteSize() + MESSAGE_FRAMING_BYTES
            if size > budget:
                if messages:
                    peer.carry = proto
                    break
                # The core sizes appends and we chunk snapshots: one message alone never exceeds it.
                raise AssertionError(
                    f"a {MsgType(proto.type).name} message of {size} bytes to node "
                    f"{peer.node_id} exceeds the {self._batch_budget_bytes}-byte budget"
                )
            messages.append(proto)
            budget -= size
        return raft_pb2.RaftMessageBatch(
            cluster_id=self.cluster_id,
            from_node=self.node_id,
            messages=messages,
            from_address=self.own_address,
            controller=self.controller,
        )

    async def _batches(self, peer: _Peer):
        while True:
            if not peer.has_pending():
                peer.ready.clear()
                await peer.ready.wait()
            yield self.next_batch(peer)

    async def _stream_to(self, peer: _Peer) -> None:
        while True:
            channel = aio_channel(peer.address, self.max_message_bytes, KEEPALIVE_OPTIONS, self.security)
            try:
                stub = raft_pb2_grpc.RaftServiceStub(channel)
                await stub.Send(self._batches(peer))
            except grpc.RpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ):
                    log.error("node %d refused our messages: %s %s", peer.node_id, exc.code().name, exc.details())
                else:
                    log.debug("stream to node %d broke: %s", peer.node_id, exc.code())
            finally:
                await channel.close()
            peer.drop_pending()  # stale by now; Raft resends what matters
            await asyncio.sleep(RECONNECT_BACKOFF_S)
