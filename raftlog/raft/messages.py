"""Raft messages, entries and the persisted state the core is started from.

Plain slotted dataclasses: the core and the simulation pass them around by the million, and
the transport converts them to protobuf only at the process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from raftlog.node_ids import NO_NODE, node_or_none


class MsgType(IntEnum):
    APPEND = 1
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    TIMEOUT_NOW = 10
    # An observer (a node outside the voter set: a broker-only node) asks the voters for the log;
    # the leader starts replicating to it, the others ignore it.
    FETCH = 11
    # A voter that is not the leader answers a FETCH with the leader it knows (`leader`,
    # `leader_address`), so an observer whose configuration is stale still finds it.
    FETCH_RESP = 12


@dataclass(slots=True, frozen=True)
class Entry:
    term: int
    index: int
    data: bytes = b""  # b"": the empty entry a new leader appends (never handed to the state machine)


@dataclass(slots=True, frozen=True)
class Snapshot:
    index: int
    term: int
    data: bytes
    # The voter set in force at `index` (raftlog.raft.membership.encode_voters); b"": none recorded
    # (a snapshot from before configuration entries: the node's configured voters).
    config: bytes = b""


@dataclass(slots=True)
class Message:
    type: MsgType
    to: int
    frm: int
    term: int
    log_term: int = 0  # APPEND: term of the entry at `index`; votes: candidate's last log term
    index: int = 0  # APPEND: index before `entries`; votes: last log index; responses: match/hint
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0  # APPEND_RESP reject: the follower's guess of the last index that may match
    snapshot: Snapshot | None = None
    context: int = 0  # HEARTBEAT(_RESP): the ReadIndex round being confirmed
    transfer: bool = False  # VOTE from a leadership transfer: ignores leader stickiness
    leader: int = NO_NODE  # FETCH_RESP: the leader the sender knows
    leader_address: str = ""  # FETCH_RESP: its address, when the sender's configuration has it


@dataclass(slots=True)
class HardState:
    term: int = 0
    vote: int = NO_NODE
    commit: int = 0


@dataclass
class PersistedState:
    """What a node loads from disk at start."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)  # the entries after the snapshot, in order


@dataclass(slots=True, frozen=True)
class ReadState:
    request_id: int
    index: int  # reads are linearizable once the state machine has applied this index


@dataclass
class Ready:
    """What the driver must do, in order: persist (hard state, truncation, entries, snapshot), send, apply."""

    hard_state: HardState | None
    truncate_from: int | None  # delete persisted entries with index >= this before appending
    entries: list[Entry]
    snapshot: Snapshot | None
    messages: list[Message]
    committed_entries: list[Entry]
    read_states: list[ReadState]

    @property
    def must_sync(self) -> bool:
        return bool(self.hard_state or self.entries or self.snapshot or self.truncate_from is not None)


class NotLeaderError(Exception):
    """The operation needs the leader; leader_id is the leader this node knows of (or None)."""

    def __init__(self, leader_id: int | None):
        leader = None if leader_id is None else node_or_none(leader_id)
        super().__init__(f"not the leader; leader is {'unknown' if leader is None else leader}")
        self.leader_id = leader
