"""RaftDriver: runs the pure RaftNode on asyncio with a clock, RocksDB storage and the gRPC transport.

The Ready loop, one at a time and in this order: persist (one synced write batch, on a
worker thread so proposals keep arriving and share the next fsync: group commit), send,
apply committed entries to the state machine, hand out read states, advance. Nothing waits
by polling: proposers wait on a future resolved when their entry is applied here, readers on a
future per read index, and `wait_applied` on a future per waited index (a heap, released as
entries are applied); a leadership transfer waits on the next leader change. A snapshot of the
state machine is taken every `snapshot_interval_entries` applied entries.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from raftlog.limits import (
    MAX_MESSAGE_BYTES,
    MAX_RAFT_ENTRY_BYTES,
    RAFT_ENTRY_OVERHEAD_BYTES,
    RAFT_MAX_ENTRIES_PER_MESSAGE,
    RAFT_MAX_INFLIGHT_MESSAGES,
    raft_payload_bytes,
)
from raftlog.node_ids import NO_NODE, node_or_none
from raftlog.raft.core import ProgressState, RaftNode, RaftSettings, Role
from raftlog.raft.membership import MembershipError, is_config
from raftlog.raft.messages import Message, MsgType, NotLeaderError, Ready
from raftlog.raft.storage import RaftStorage
from raftlog.raft.transport import RaftTransport
from raftlog.store import Store
from raftlog.tasks import TaskSupervisor
from raftlog.tls import ClientSecurity, PeerAuthenticator

log = logging.getLogger(__name__)

LEADER_MESSAGES = frozenset({MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT, MsgType.TIMEOUT_NOW})


class StateMachine(Protocol):
    def apply(self, index: int, term: int, data: bytes) -> Any: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes, index: int, term: int) -> None: ...


@dataclass(frozen=True, slots=True)
class DriverSettings:
    """Built from the node's configuration (raftlog.node); the defaults live in raftlog.config."""

    tick_ms: int
    election_timeout_ms: int
    heartbeat_interval_ms: int
    snapshot_interval_entries: int
    max_entries_per_message: int = RAFT_MAX_ENTRIES_PER_MESSAGE
    max_inflight_messages: int = RAFT_MAX_INFLIGHT_MESSAGES
    # The transport's message limit (the servers' MAX_MESSAGE_BYTES; tests make it small): appends
    # are sized to fit it and snapshots are sent in chunks of it.
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def raft_settings(self) -> RaftSettings:
        append_bytes = raft_payload_bytes(self.max_message_bytes)
        return RaftSettings(
            election_ticks=max(2, self.election_timeout_ms // self.tick_ms),
            heartbeat_ticks=max(1, self.heartbeat_interval_ms // self.tick_ms),
            max_entries_per_message=self.max_entries_per_message,
            max_bytes_per_message=append_bytes,
            max_entry_bytes=min(MAX_RAFT_ENTRY_BYTES, append_bytes - RAFT_ENTRY_OVERHEAD_BYTES),
            max_inflight_messages=self.max_inflight_messages,
        )


@dataclass
class PeerProgress:
    match_index: int
    next_index: int
    state: str
    last_contact_ms_ago: float | None
    last_caught_up_ms_ago: float | None
    voter: bool = True  # False: an observer (follows the log, never votes)


@dataclass
class RaftStatus:
    node_id: int
    role: str
    term: int
    leader_id: int | None
    commit_index: int
    applied_index: int
    last_index: int
    last_log_term: int
    snapshot_index: int
    voters: tuple[int, ...] = ()  # the voter set this node uses
    progress: dict[int, PeerProgress] = field(default_factory=dict)  # the leader's: voters and observers

    @property
    def is_voter(self) -> bool:
        return self.node_id in self.voters


class RaftDriver:
    def __init__(
        self,
        *,
        node_id: int,
        voters: dict[int, str],
        cluster_id: str,
        store: Store,
        state_machine: StateMachine,
        settings: DriverSettings,
        tasks: TaskSupervisor,
        security: ClientSecurity | None = None,
        own_address: str = "",
        controller: bool = True,
    ):
        """voters: id -> address of every voter; a node not among them is an observer (it follows
        the log without voting). Every batch carries own_address, so a node whose configuration
        lacks us (the leader, for an observer; a voter that has not seen us added) can answer, and
        whether this node has the controller role (controller: False for process.roles=broker), so
        that a leader never makes a broker-only node a voter."""
        self.node_id = node_id
        self._supervisor = tasks
        self.settings = settings
        self._state_machine = state_machine
        self._storage = RaftStorage(store)
        persisted = self._storage.load()
        if persisted.snapshot is not None:
            state_machine.restore(persisted.snapshot.data, persisted.snapshot.index, persisted.snapshot.term)
        self.core = RaftNode(node_id, dict(voters), persisted, settings.raft_settings(), random.Random())
        if persisted.snapshot is not None:
            self.core.set_snapshot(persisted.snapshot)
        self._transport = RaftTransport(
            node_id,
            cluster_id,
            voters,
            self._deliver,
            tasks,
            settings.max_message_bytes,
            security,
            own_address=own_address,
            controller=controller,
        )
        self._own_address = own_address
        self._config_seen = -1  # the configuration index the transport's peers follow
        self._wake = asyncio.Event()
        self._proposals: dict[int, tuple[int, asyncio.Future]] = {}  # index -> (term, future)
        self._reads: dict[int, asyncio.Future] = {}
        self._confirmed_reads: list[tuple[int, asyncio.Future]] = []  # (read index, future) awaiting apply
        self._read_ids = itertools.count(1)
        # (index, sequence, future) of wait_applied callers; a heap, so the lowest is released first.
        self._applied_waiters: list[tuple[int, int, asyncio.Future]] = []
        self._waiter_ids = itertools.count()
        self._leader_change_waiters: list[asyncio.Future] = []
        self._leader_callbacks: list[Callable[[int | None, int], None]] = []
        self._last_leader = (NO_NODE, 0)
        # (node id, monotonic ms): the last leader we followed and when it last spoke to us.
        self._leader_contact: tuple[int, float] = (NO_NODE, 0.0)
        self._last_role = self.core.role
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def add_to_server(self, server: grpc.aio.Server, authenticator: PeerAuthenticator | None = None) -> None:
        self._transport.add_to_server(server, authenticator)

    async def start(self) -> None:
        self._transport.start()
        self._tasks = [
            self._supervisor.spawn(self._tick_loop(), name="raft-tick", critical=True),
            self._supervisor.spawn(self._ready_loop(), name="raft-ready", critical=True),
        ]

    async def stop(self, transfer_leadership: bool = True) -> None:
        if transfer_leadership and self.core.role == Role.LEADER and len(self.core.voters) > 1:
            try:
                await self.transfer_leadership(timeout_ms=2 * self.settings.election_timeout_ms)
            except (NotLeaderError, TimeoutError, ValueError) as exc:
                log.info("leadership hand-off before stopping did not finish: %s", exc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._transport.stop()
        self._fail_waiters(NotLeaderError(None))

    def on_leader_change(self, callback: Callable[[int | None, int], None]) -> None:
        self._leader_callbacks.append(callback)

    # -- loops ---------------------------------------------------------------------------------

    def _deliver(self, messages: list[Message]) -> None:
        for msg in messages:
            if msg.type == MsgType.FETCH_RESP and msg.leader_address:
                self._transport.add_peer(msg.leader, msg.leader_address)  # a leader our configuration lacks
            self.core.step(msg)
            if msg.type in LEADER_MESSAGES and msg.frm == self.core.leader_id != self.node_id:
                self._leader_contact = (msg.frm, time.monotonic() * 1000.0)
        self._wake.set()

    def previous_leader_contact(self) -> tuple[int, float]:
        """(node id, monotonic ms) of the last leader this node followed and when it last heard from
        it: a new leader knows that node has been silent since then (it won by election timeout)."""
        return self._leader_contact

    async def _tick_loop(self) -> None:
        interval_s = self.settings.tick_ms / 1000.0
        next_tick = time.monotonic()
        while True:
            next_tick += interval_s
            now = time.monotonic()
            if next_tick < now - interval_s:
                # The process stalled (CPU starved, a slow synced write): missed ticks are dropped,
                # not replayed in a burst, which would count the peers' answers still waiting in
                # the sockets as silence and make a healthy leader step down (CheckQuorum). Time
                # in Raft only stretches; no safety property rests on a timer.
                next_tick = now
            await asyncio.sleep(max(0.0, next_tick - now))
            self.core.tick()
            self._wake.set()

    async def _ready_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ready = self.core.ready()
            while ready is not None:
                self._follow_config()
                await self._handle_ready(ready)
                if ready.committed_entries:
                    # One loop turn for what applying them set off (the controller proposes the
                    # decisions that waited for its entry): the commit index the core holds back
                    # for one Ready then goes out with those entries (RaftNode.ready).
                    await asyncio.sleep(0)
                ready = self.core.ready()
            self._follow_config()
            self._notice_leader_change()

    def _follow_config(self) -> None:
        """The transport reaches every voter of the configuration in force (it may have changed
        with the entries this Ready carries)."""
        core = self.core
        if core.config_index == self._config_seen:
            return
        self._config_seen = core.config_index
        self._transport.set_voters(core.voter_addresses, self._own_address)
        log.info("node %d: voters %s (configuration at %d)", self.node_id, core.voters, core.config_index)

    async def _handle_ready(self, ready: Ready) -> None:
        # A leader's appends may go out before its own write (Raft thesis 10.2.1): the leader
        # counts itself toward commit only once persisted, so the disk write and the round trip
        # to the followers overlap. Everything else (votes, acks) waits for the write.
        early = [m for m in ready.messages if m.type in LEADER_MESSAGES]
        late = [m for m in ready.messages if m.type not in LEADER_MESSAGES] if early else ready.messages
        self._transport.send(early)
        if ready.must_sync:
            # Always on a worker thread, even for a few bytes: a synced write holds the event loop
            # for its fsync (~0.2 ms idle, far more on a busy disk), and under load followers spent
            # 35-40% of their time there instead of taking the next batch of requests.
            await asyncio.to_thread(self._storage.persist, ready)
        self._transport.send(late)
        if ready.snapshot is not None:
            self._state_machine.restore(ready.snapshot.data, ready.snapshot.index, ready.snapshot.term)
            log.info(
                "installed snapshot at index %d (term %d) from the leader", ready.snapshot.index, ready.snapshot.term
            )
        for entry in ready.committed_entries:
            # The leader's empty entry and configuration entries are Raft's own, not the state machine's.
            applied = entry.data and not is_config(entry.data)
            result = self._state_machine.apply(entry.index, entry.term, entry.data) if applied else None
            self._resolve_proposal(entry.index, entry.term, result)
        for read in ready.read_states:
            future = self._reads.pop(read.request_id, None)
            if future is not None:
                self._confirmed_reads.append((read.index, future))
        self.core.advance(ready)
        self._release_reads()
        self._release_applied_waiters()
        await self._maybe_snapshot()

    def _resolve_proposal(self, index: int, term: int, result: Any) -> None:
        waiting = self._proposals.pop(index, None)
        if waiting is None:
            return
        proposed_term, future = waiting
        if future.done():
            return
        if proposed_term == term:
            future.set_result(result)
        else:
            future.set_exception(NotLeaderError(self.core.leader_id))  # another leader's entry took the index

    def _release_applied_waiters(self) -> None:
        applied = self.core.log.applied
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= applied:
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)

    def _release_reads(self) -> None:
        applied = self.core.log.applied
        remaining = []
        for index, future in self._confirmed_reads:
            if index <= applied:
                if not future.done():
                    future.set_result(None)
            else:
                remaining.append((index, future))
        self._confirmed_reads = remaining

    async def _maybe_snapshot(self) -> None:
        raft_log = self.core.log
        if raft_log.applied - raft_log.snapshot_index >= self.settings.snapshot_interval_entries:
            await self.compact_now()

    async def compact_now(self) -> int:
        """Snapshots the state machine at the applied index and drops the entries it covers."""
        applied = self.core.log.applied
        if applied <= self.core.log.snapshot_index:
            return self.core.log.snapshot_index
        snapshot = self.core.compact(applied, self._state_machine.snapshot())
        await asyncio.to_thread(self._storage.compact, snapshot)
        log.info("snapshot at index %d (%d bytes)", snapshot.index, len(snapshot.data))
        return snapshot.index

    def _notice_leader_change(self) -> None:
        if self.core.role != self._last_role:
            log.info(
                "node %d: %s -> %s in term %d",
                self.node_id,
                self._last_role.value,
                self.core.role.value,
                self.core.term,
            )
            self._last_role = self.core.role
        current = (self.core.leader_id, self.core.term)
        if current[0] != self._last_leader[0]:
            if self._last_leader[0] == self.node_id:
                self._fail_reads(NotLeaderError(self.core.leader_id))
            for callback in self._leader_callbacks:
                callback(node_or_none(current[0]), current[1])
            waiters, self._leader_change_waiters = self._leader_change_waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)
        self._last_leader = current

    def _fail_reads(self, error: Exception) -> None:
        for future in list(self._reads.values()) + [f for _, f in self._confirmed_reads]:
            if not future.done():
                future.set_exception(error)
        self._reads.clear()
        self._confirmed_reads.clear()

    def _fail_waiters(self, error: Exception) -> None:
        self._fail_reads(error)
        for _, future in self._proposals.values():
            if not future.done():
                future.set_exception(error)
        self._proposals.clear()

    # -- API -----------------------------------------------------------------------------------

    def leader_term(self) -> int | None:
        """The current term while this node leads it, else None."""
        return self.core.term if self.core.role == Role.LEADER else None

    @property
    def last_index(self) -> int:
        return self.core.log.last_index

    @property
    def max_entry_bytes(self) -> int:
        return self.core.settings.max_entry_bytes

    def propose_entry(self, data: bytes) -> tuple[int, asyncio.Future]:
        """Appends one entry now; returns its index and a future resolved with the state machine's
        result once it is applied here (NotLeaderError if another leader's entry takes the index).
        The caller bounds its own wait."""
        term = self.core.term
        index = self.core.propose(data)
        future = asyncio.get_running_loop().create_future()
        replaced = self._proposals.get(index)
        if replaced is not None and not replaced[1].done():
            # An entry of an earlier term of ours that a later leader overwrote before we saw it applied.
            assert replaced[0] < term, f"two proposals of term {term} at index {index}"
            replaced[1].set_exception(NotLeaderError(self.core.leader_id))
        self._proposals[index] = (term, future)
        self._wake.set()
        return index, future

    async def change_voters(
        self, add: tuple[int, str] | None = None, remove: int | None = None, timeout_ms: int = 5000
    ) -> int:
        """Adds one voter (id, address: "" for the address it gave as an observer) or removes one;
        returns the configuration entry's index once it is committed and applied here. Raises
        MembershipError (why it was refused) or NotLeaderError."""
        if add is not None and add[0] not in self.core.voter_addresses:
            if self._transport.controller_role.get(add[0]) is False:
                raise MembershipError(
                    "INVALID_VOTER_KEY",
                    f"node {add[0]} follows the metadata log with process.roles=broker; only a node with the "
                    "controller role can become a voter",
                )
            if not add[1]:
                address = self._transport.peer_address(add[0])
                if not address:
                    raise MembershipError(
                        "REQUEST_TIMED_OUT", f"node {add[0]} has not followed this leader as an observer"
                    )
                add = (add[0], address)
        term = self.core.term
        index = self.core.propose_config_change(add=add, remove=remove)
        future = asyncio.get_running_loop().create_future()
        self._proposals[index] = (term, future)
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout_ms / 1000.0)
        except TimeoutError:
            self._proposals.pop(index, None)
            raise TimeoutError(f"the voter change at {index} was not committed within {timeout_ms} ms") from None
        return index

    async def propose(self, data: bytes, timeout_ms: int = 5000) -> Any:
        index, future = self.propose_entry(data)
        try:
            return await asyncio.wait_for(future, timeout_ms / 1000.0)
        except TimeoutError:
            self._proposals.pop(index, None)
            raise TimeoutError(f"entry {index} was not committed within {timeout_ms} ms") from None

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        """True once this node has applied the entry at `index`; False after timeout_s."""
        if self.core.log.applied >= index:
            return True
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._applied_waiters, (index, next(self._waiter_ids), future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return False  # the future stays in the heap until its index is applied (done: skipped)
        return True

    async def read_index(self, timeout_ms: int = 5000) -> None:
        request_id = next(self._read_ids)
        self.core.read_index(request_id)
        future = asyncio.get_running_loop().create_future()
        self._reads[request_id] = future
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout_ms / 1000.0)
        except TimeoutError:
            self._reads.pop(request_id, None)
            raise TimeoutError(f"read index not confirmed within {timeout_ms} ms") from None

    async def transfer_leadership(self, target_id: int | None = None, timeout_ms: int = 3000) -> int:
        if self.core.role != Role.LEADER:
            raise NotLeaderError(self.core.leader_id)
        if target_id is None:
            voters = [v for v in self.core.progress if v in self.core.voters]
            if not voters:
                raise ValueError("no other voter to hand leadership to")
            target_id = max(voters, key=lambda v: self.core.progress[v].match)
        self.core.transfer_leadership(target_id)
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000.0
        while self.core.leader_id in (NO_NODE, self.node_id):
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                raise TimeoutError(f"leadership did not move to {target_id} within {timeout_ms} ms")
            changed = loop.create_future()
            self._leader_change_waiters.append(changed)
            try:
                await asyncio.wait_for(changed, remaining_s)
            except TimeoutError:
                pass
        return self.core.leader_id

    def status(self) -> RaftStatus:
        core = self.core
        status = RaftStatus(
            node_id=self.node_id,
            role=core.role.value,
            term=core.term,
            leader_id=node_or_none(core.leader_id),
            commit_index=core.log.committed,
            applied_index=core.log.applied,
            last_index=core.log.last_index,
            last_log_term=core.log.last_term,
            snapshot_index=core.log.snapshot_index,
            voters=tuple(core.voters),
        )
        if core.role == Role.LEADER:
            tick_ms = self.settings.tick_ms
            for voter, progress in core.progress.items():
                status.progress[voter] = PeerProgress(
                    match_index=progress.match,
                    next_index=progress.next,
                    state=progress.state.value,
                    last_contact_ms_ago=_ago(core.ticks, progress.last_contact_tick, tick_ms),
                    last_caught_up_ms_ago=_ago(core.ticks, progress.last_caught_up_tick, tick_ms),
                    voter=voter in core.voters,
                )
        return status


def _ago(now_tick: int, then_tick: int | None, tick_ms: int) -> float | None:
    return None if then_tick is None else (now_tick - then_tick) * tick_ms


__all__ = ["DriverSettings", "PeerProgress", "ProgressState", "RaftDriver", "RaftStatus", "StateMachine"]
