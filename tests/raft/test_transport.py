"""The Raft transport: refused batches, message size limits, snapshots sent in chunks."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from raftlog.channels import channel_options
from raftlog.errors import REASON_METADATA_KEY
from raftlog.raft.driver import DriverSettings, RaftDriver
from raftlog.raft.messages import Entry, Message, MsgType, Snapshot
from raftlog.raft.transport import RaftTransport, SnapshotAssembly, _Peer
from raftlog.store import Store
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import raft_pb2, raft_pb2_grpc

CLUSTER = "transport-test"


def raft_message(msg_type: int, frm: int, to: int = 1, term: int = 1) -> raft_pb2.RaftMessage:
    proto = raft_pb2.RaftMessage(type=msg_type, to=to, term=term)
    setattr(proto, "from", frm)
    return proto


async def send_batches(batches: list[raft_pb2.RaftMessageBatch]) -> tuple[list[Message], grpc.aio.AioRpcError | None]:
    """Streams the batches to a transport of node 1 (voters 1, 2, 3); returns what reached its
    core and the error the stream ended with."""
    delivered: list[Message] = []
    transport = RaftTransport(
        1, CLUSTER, {1: "", 2: "127.0.0.1:1", 3: "127.0.0.1:1"}, delivered.extend, TaskSupervisor()
    )
    server = grpc.aio.server()
    transport.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    error = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                await raft_pb2_grpc.RaftServiceStub(channel).Send(iter(batches), timeout=10)
            except grpc.aio.AioRpcError as exc:
                error = exc
    finally:
        await server.stop(None)
    return delivered, error


def test_good_messages_reach_the_core():
    batch = raft_pb2.RaftMessageBatch(
        cluster_id=CLUSTER, from_node=2, messages=[raft_message(MsgType.HEARTBEAT, frm=2)]
    )
    delivered, error = asyncio.run(send_batches([batch]))
    assert error is None and [(m.type, m.frm) for m in delivered] == [(MsgType.HEARTBEAT, 2)]


def test_an_unknown_message_type_is_a_refused_request():
    batch = raft_pb2.RaftMessageBatch(
        cluster_id=CLUSTER, from_node=2, messages=[raft_message(MsgType.HEARTBEAT, frm=2), raft_message(42, frm=2)]
    )
    delivered, error = asyncio.run(send_batches([batch]))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "INVALID_REQUEST: unknown Raft message type 42" in error.details()
    assert (REASON_METADATA_KEY, "INVALID_REQUEST") in tuple(error.trailing_metadata())
    assert delivered == [], "nothing of a refused batch reaches the core"


@pytest.mark.parametrize(
    "batches, problem",
    [
        # node 2's stream carries a message claiming to come from node 3 (a voter too)
        ([[2, 3]], "a message from node 3 on the stream of node 2"),
        # the second batch of node 2's stream claims to be node 3's
        ([[2, 2], [3, 3]], "a batch from node 3 on the stream of node 2"),
    ],
)
def test_a_message_not_from_the_streams_sender_is_refused(batches, problem):
    protos = [
        raft_pb2.RaftMessageBatch(
            cluster_id=CLUSTER, from_node=b[0], messages=[raft_message(MsgType.HEARTBEAT, frm=b[1])]
        )
        for b in batches
    ]
    delivered, error = asyncio.run(send_batches(protos))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in error.details()
    assert all(m.frm == 2 for m in delivered)


def test_batches_fit_the_limit_and_a_snapshot_is_reassembled_from_chunks():
    max_message_bytes = 8 * 1024
    transport = RaftTransport(
        1, CLUSTER, {1: "", 2: "127.0.0.1:1"}, lambda _: None, TaskSupervisor(), max_message_bytes
    )
    peer: _Peer = transport.peers[2]
    appends = [Message(MsgType.APPEND, 2, 1, 3, entries=(Entry(3, i, b"x" * 1500),)) for i in range(1, 9)]
    snapshot = Snapshot(40, 3, bytes(range(256)) * 200)  # 51,200 bytes: seven chunks at least
    transport.send(appends[:4] + [Message(MsgType.SNAPSHOT, 2, 1, 3, commit=40, snapshot=snapshot)] + appends[4:])
    received: list[Message] = []
    assembly = SnapshotAssembly()
    batches = 0
    while peer.has_pending():
        batch = transport.next_batch(peer)
        batches += 1
        assert batch.ByteSize() <= max_message_bytes
        for proto in batch.messages:
            msg = assembly.add(proto) if proto.type == MsgType.SNAPSHOT else None
            if proto.type != MsgType.SNAPSHOT:
                received.append(
                    Message(
                        MsgType(proto.type),
                        proto.to,
                        getattr(proto, "from"),
                        proto.term,
                        entries=tuple(Entry(e.term, e.index, e.data) for e in proto.entries),
                    )
                )
            elif msg is not None:
                received.append(msg)
    assert batches >= 7 + 2
    assert [m.type for m in received] == [MsgType.APPEND] * 4 + [MsgType.SNAPSHOT] + [MsgType.APPEND] * 4
    assert received[4].snapshot == snapshot and received[4].commit == 40
    assert [m.entries for m in received if m.type == MsgType.APPEND] == [m.entries for m in appends]


class BulkyStateMachine:
    """Keeps every applied entry, so its snapshot grows past one message quickly."""

    def __init__(self) -> None:
        self.entries: dict[int, bytes] = {}

    def apply(self, index: int, term: int, data: bytes) -> None:
        self.entries[index] = data

    def snapshot(self) -> bytes:
        return b"".join(index.to_bytes(8, "big") + len(d).to_bytes(4, "big") + d for index, d in self.entries.items())

    def restore(self, data: bytes, index: int, term: int) -> None:
        self.entries, position = {}, 0
        while position < len(data):
            at, size = (
                int.from_bytes(data[position : position + 8], "big"),
                int.from_bytes(data[position + 8 : position + 12], "big"),
            )
            self.entries[at] = data[position + 12 : position + 12 + size]
            position += 12 + size


def test_a_follower_far_behind_catches_up_by_a_snapshot_larger_than_one_message(tmp_path):
    max_message_bytes = 16 * 1024
    settings = DriverSettings(
        tick_ms=10,
        election_timeout_ms=200,
        heartbeat_interval_ms=20,
        snapshot_interval_entries=20,
        max_message_bytes=max_message_bytes,
    )

    async def scenario() -> None:
        servers, ports = {}, {}
        for node_id in (1, 2, 3):
            servers[node_id] = grpc.aio.server(options=channel_options(max_message_bytes))
            ports[node_id] = servers[node_id].add_insecure_port("127.0.0.1:0")
        voters = {i: f"127.0.0.1:{ports[i]}" for i in ports}
        stores = {i: Store(tmp_path / f"node-{i}") for i in voters}
        machines = {i: BulkyStateMachine() for i in voters}
        supervisor = TaskSupervisor()
        drivers = {
            i: RaftDriver(
                node_id=i,
                voters=voters,
                cluster_id=CLUSTER,
                store=stores[i],
                state_machine=machines[i],
                settings=settings,
                tasks=supervisor,
            )
            for i in voters
        }
        for i in voters:
            drivers[i].add_to_server(servers[i])
        started = [1, 2]  # node 3 stays down while the others commit and compact
        try:
            for i in started:
                await servers[i].start()
                await drivers[i].start()
            leader = await wait_for(
                lambda: next((d for i, d in drivers.items() if i in started and d.status().leader_id == i), None),
                "a leader",
            )
            for n in range(120):
                await leader.propose(b"%05d" % n + b"v" * 1000)
            assert leader.core.log.snapshot_index > 1, "the leader compacted the entries node 3 lacks"
            assert len(machines[leader.node_id].snapshot()) > 4 * max_message_bytes
            await servers[3].start()
            await drivers[3].start()
            started.append(3)
            commit = leader.core.log.committed
            await wait_for(lambda: drivers[3].core.log.applied >= commit, "node 3 to catch up")
            assert drivers[3].core.log.snapshot_index > 1, "node 3 caught up by installing a snapshot"
            assert {i: d for i, d in machines[3].entries.items() if i <= commit} == {
                i: d for i, d in machines[leader.node_id].entries.items() if i <= commit
            }
        finally:
            for i in started:
                await drivers[i].stop(transfer_leadership=False)
            for server in servers.values():
                await server.stop(None)
            for store in stores.values():
                store.close()

    asyncio.run(scenario())


async def wait_for(predicate, what: str, timeout_s: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_observer_names_its_address_and_a_snapshot_keeps_its_voter_set_across_chunks():
    from raftlog.raft.membership import encode_voters
    from raftlog.raft.transport import from_proto, snapshot_chunks, to_proto

    config = encode_voters({1: "n1:9092", 2: "n2:9092"})
    snapshot = Snapshot(40, 3, bytes(range(256)) * 100, config)
    assembly = SnapshotAssembly()
    whole = [assembly.add(p) for p in snapshot_chunks(Message(MsgType.SNAPSHOT, 2, 1, 3, snapshot=snapshot), 1000)]
    assert whole[-1].snapshot == snapshot and all(m is None for m in whole[:-1])
    hint = Message(MsgType.FETCH_RESP, 7, 2, 3, leader=1, leader_address="n1:9092")
    assert from_proto(to_proto(hint)) == hint
    observer = raft_pb2.RaftMessageBatch(
        cluster_id=CLUSTER, from_node=7, messages=[raft_message(MsgType.FETCH, 7)], from_address="127.0.0.1:1"
    )
    delivered, error = asyncio.run(send_batches([observer]))
    assert error is None and [m.type for m in delivered] == [MsgType.FETCH]
    stranger = raft_pb2.RaftMessageBatch(cluster_id=CLUSTER, from_node=8, messages=[raft_message(MsgType.FETCH, 8)])
    delivered, error = asyncio.run(send_batches([stranger]))
    assert delivered == [] and error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
