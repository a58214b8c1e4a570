"""RaftNode: the pure Raft state machine (no I/O, no clock, no threads), in the manner of etcd's raft.

Inputs are `tick()` (time), `step(message)`, `propose(data)`, `read_index(id)`,
`transfer_leadership(target)` and `compact(index, data)`; `ready()` returns what must be
persisted, sent and applied, and `advance(ready)` says it has been done. Everything random
comes from the injected `random.Random`, so a run is a pure function of its inputs.

Features: randomized election timeouts, PreVote, CheckQuorum with leader stickiness (a node
that hears from a live leader ignores (pre)votes), pipelined replication with probe /
replicate / snapshot states per follower and fast backtracking, the commit rule (only
entries of the current term are committed by counting), InstallSnapshot, leadership
transfer (TimeoutNow) and ReadIndex.

Observers (Kafka's broker-only nodes, etcd's learners): a node outside the voter set follows the
log but never campaigns or counts toward a majority (commit, CheckQuorum, ReadIndex, votes); it
answers a vote request as any node does (dissertation 4.1), but only a candidate whose
configuration lists it as a voter (it was just added) asks it. The
leader does not know observers in advance: an observer that hears no leader sends FETCH to every
voter, and the leader that gets it starts replicating to it (a progress entry like a follower's,
dropped when the observer stays silent for RAFT_OBSERVER_TIMEOUT_ELECTIONS election timeouts).

Membership (KIP-853 in the manner of the Raft dissertation, chapter 4): the voter set is kept in
the log as configuration entries (raftlog.raft.membership), and a node uses the latest one in its
log, committed or not (the voters it was started with until there is one; a snapshot records the
set at its index). `propose_config_change` adds or removes one voter at a time; it is refused
while an earlier change is uncommitted, and until this leader has committed an entry of its own
term (the fix to single-server changes Ongaro posted in 2015). A voter is added only once it
follows this leader as a caught-up observer. A leader that removes itself goes on leading
(without counting itself) until the change commits, then hands leadership to the most caught-up
voter and steps down (dissertation 4.2.2). A removed voter that missed its removal asks the leader
for votes; the leader answers as to a FETCH, so it learns it was removed and follows as an observer.

Node ids are >= 0; NO_NODE (-1) means no vote / no leader. Invariants are asserted where the
state moves, with the values in the message (a broken one is a bug: the node stops loudly):
legal role transitions only (LEGAL_TRANSITIONS), the term never decreases, one leader per
term as this node sees it, a leader holds its own vote; the log asserts its indexes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from raftlog.limits import (
    MAX_MESSAGE_BYTES,
    MAX_RAFT_ENTRY_BYTES,
    RAFT_ENTRY_OVERHEAD_BYTES,
    RAFT_MAX_OBSERVERS,
    RAFT_OBSERVER_TIMEOUT_ELECTIONS,
    raft_payload_bytes,
)
from raftlog.raft.membership import MembershipError, changed_voters, decode_voters, encode_voters, is_config
from raftlog.raft.messages import (
    NO_NODE,
    Entry,
    HardState,
    Message,
    MsgType,
    NotLeaderError,
    PersistedState,
    ReadState,
    Ready,
    Snapshot,
)
from raftlog.raft.raft_log import RaftLog


class Role(Enum):
    FOLLOWER = "Follower"
    PRE_CANDIDATE = "PreCandidate"
    CANDIDATE = "Candidate"
    LEADER = "Leader"


# Who may become what. A leader only ever steps down to follower; it never campaigns again
# without first hearing of a higher term (or losing its quorum) as a follower.
LEGAL_TRANSITIONS = {
    Role.FOLLOWER: frozenset({Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE}),  # CANDIDATE: transfer
    Role.PRE_CANDIDATE: frozenset({Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE}),
    Role.CANDIDATE: frozenset({Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER}),
    Role.LEADER: frozenset({Role.FOLLOWER}),
}


class ProgressState(Enum):
    PROBE = "probe"  # one append at a time until we find where the follower's log matches
    REPLICATE = "replicate"  # pipelined appends, up to max_inflight_messages
    SNAPSHOT = "snapshot"  # waiting for a snapshot to be installed


@dataclass
class RaftSettings:
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_entries_per_message: int = 1024
    # An append carries at least one entry and at most this many bytes of entries (with their
    # framing), so it fits in one transport message; a snapshot is chunked by the transport.
    max_bytes_per_message: int = raft_payload_bytes(MAX_MESSAGE_BYTES)
    max_entry_bytes: int = MAX_RAFT_ENTRY_BYTES  # a larger proposal is refused (ValueError)
    max_inflight_messages: int = 64
    pre_vote: bool = True
    check_quorum: bool = True


@dataclass
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    inflight: list[int] = field(default_factory=list)  # last index of each append in flight
    probe_sent: bool = False
    recent_active: bool = False
    last_contact_tick: int | None = None
    last_caught_up_tick: int | None = None
    pending_snapshot: int = 0
    snapshot_sent_tick: int = 0

    def become_probe(self, next_index: int) -> None:
        self.state, self.inflight, self.probe_sent = ProgressState.PROBE, [], False
        # Not a clamp: a stale rejection or hint may point at or below what the follower already
        # acknowledged; probing resumes after its match (as etcd's Progress does).
        self.next = max(self.match + 1, next_index)

    def become_replicate(self) -> None:
        self.state, self.inflight, self.probe_sent = ProgressState.REPLICATE, [], False
        self.next = self.match + 1

    def acknowledge(self, index: int) -> bool:
        """A successful append response; returns True if it moved match forward."""
        self.inflight = [i for i in self.inflight if i > index]
        self.probe_sent = False
        if index > self.match:
            self.match = index
            self.next = max(self.next, index + 1)
            return True
        return False


@dataclass
class _ReadRequest:
    request_id: int
    index: int
    acks: set[int]


class RaftNode:
    def __init__(
        self,
        node_id: int,
        voters: Sequence[int] | Mapping[int, str],
        persisted: PersistedState,
        settings: RaftSettings,
        rng: random.Random,
    ):
        """voters: the voter set to start with (id -> address, or ids) while the log and snapshot
        hold no configuration entry."""
        if not voters:
            raise ValueError("the voter set is empty")
        if settings.max_entry_bytes + RAFT_ENTRY_OVERHEAD_BYTES > settings.max_bytes_per_message:
            raise ValueError(
                f"max_entry_bytes {settings.max_entry_bytes} does not fit in an append of "
                f"max_bytes_per_message {settings.max_bytes_per_message}"
            )
        if min(voters) < 0 or node_id < 0:
            raise ValueError(f"node ids must be >= 0 ({NO_NODE} means no node): {node_id}, {sorted(voters)}")
        self.id = node_id
        bootstrap = dict(voters) if isinstance(voters, Mapping) else {v: "" for v in voters}
        snapshot = persisted.snapshot
        # The voter set at the snapshot point, and (index, voters) of each configuration entry in
        # the log after it, in order; the last one in force is the node's configuration.
        self._snapshot_voters = decode_voters(snapshot.config) if snapshot and snapshot.config else bootstrap
        self._config_entries: list[tuple[int, dict[int, str]]] = [
            (e.index, decode_voters(e.data)) for e in persisted.entries if is_config(e.data)
        ]
        self.voter_addresses: dict[int, str] = {}
        self.voters: list[int] = []
        self.config_index = 0  # the index of the configuration entry in force (0: none in the log)
        self.settings = settings
        self._rng = rng
        hard = persisted.hard_state
        self.term = hard.term
        self.vote = hard.vote
        self.log = RaftLog(persisted.snapshot, persisted.entries, hard.commit)
        self.role = Role.FOLLOWER
        self.leader_id = NO_NODE
        self._term_leader = NO_NODE  # the leader of self.term, once known (see _set_leader)
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.transfer_target = NO_NODE
        self._transfer_elapsed = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._ticks = 0
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._pending_reads: list[_ReadRequest] = []
        self._waiting_reads: list[int] = []  # ReadIndex requests made before this leader committed in its term
        self._leader_hint = NO_NODE  # an observer's: the leader a voter named in a FETCH_RESP
        self._pending_snapshot: Snapshot | None = None
        self._snapshot_for_followers: Snapshot | None = None  # what a lagging follower is sent
        self._broadcast_pending = False
        self._prev_hard_state = HardState(self.term, self.vote, self.log.committed)
        self._refresh_config()
        self._reset_election_timer()

    # -- introspection -------------------------------------------------------------------------

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def is_voter(self) -> bool:
        return self.id in self.voters

    @property
    def can_campaign(self) -> bool:
        """A voter; or a voter whose removal is not known to be committed: it may hold the longest
        log, which the others need to elect anyone (it counts the votes of its latest configuration,
        without its own, so this is as safe as any election)."""
        if self.is_voter:
            return True
        return self.config_index > self.log.committed and self.id in self.config_at(self.config_index - 1)

    def is_observer_progress(self, node_id: int) -> bool:
        """A leader's progress entry for a node that follows the log without voting."""
        return node_id in self.progress and node_id not in self.voters

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    @property
    def ticks(self) -> int:
        return self._ticks

    def _others(self) -> list[int]:
        return [v for v in self.voters if v != self.id]

    # -- state transitions ---------------------------------------------------------------------

    def _reset_election_timer(self) -> None:
        self._election_elapsed = 0
        low = self.settings.election_ticks
        self._randomized_timeout = low + self._rng.randrange(low)

    def _set_role(self, role: Role) -> None:
        assert role in LEGAL_TRANSITIONS[self.role], (
            f"node {self.id}: illegal transition {self.role.value} -> {role.value} in term {self.term}"
        )
        self.role = role

    def _set_leader(self, leader_id: int) -> None:
        """Follows leader_id. A term has at most one leader: _term_leader remembers it for the
        whole term, even while leader_id is cleared (a pre-candidate follows nobody)."""
        assert self._term_leader in (NO_NODE, leader_id), (
            f"node {self.id}: two leaders in term {self.term}: {self._term_leader} and {leader_id}"
        )
        self._term_leader = self.leader_id = leader_id

    def _reset(self, term: int) -> None:
        assert term >= self.term, f"node {self.id}: term moving back from {self.term} to {term}"
        if term != self.term:
            self.term, self.vote, self._term_leader = term, NO_NODE, NO_NODE
        self.leader_id = NO_NODE
        self._heartbeat_elapsed = 0
        self._reset_election_timer()
        self.votes = {}
        self._abort_transfer()
        self._pending_reads = []
        self._waiting_reads = []

    def _become_follower(self, term: int, leader_id: int) -> None:
        self._reset(term)
        self._set_role(Role.FOLLOWER)
        if leader_id != NO_NODE:
            self._set_leader(leader_id)

    def _become_pre_candidate(self) -> None:
        # A pre-candidate changes neither term nor vote: a node cut off from the others cannot
        # inflate its term and disrupt the cluster when it comes back.
        self._set_role(Role.PRE_CANDIDATE)
        self.votes = {}
        self.leader_id = NO_NODE
        self._reset_election_timer()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self._set_role(Role.CANDIDATE)
        self.vote = self.id

    def _become_leader(self) -> None:
        assert self.vote == self.id, f"node {self.id} leads term {self.term} without its own vote ({self.vote})"
        self._reset(self.term)
        self._set_role(Role.LEADER)
        self._set_leader(self.id)
        last = self.log.last_index
        # Observers are not carried over from an earlier term: they FETCH again when they stop
        # hearing from a leader.
        self.progress = {v: Progress(match=0, next=last + 1) for v in self._others()}
        for progress in self.progress.values():
            progress.recent_active = True  # give every follower a full election timeout
            progress.last_contact_tick = None
        # The empty entry of the new term lets the leader commit (and learn the commit point of)
        # everything earlier, which it may not do by counting replicas of older terms.
        self._append([Entry(self.term, last + 1, b"")])
        self._broadcast_pending = True
        self._maybe_commit()

    # -- time ----------------------------------------------------------------------------------

    def tick(self) -> None:
        self._ticks += 1
        if self.role == Role.LEADER:
            self._tick_leader()
        elif not self.can_campaign:
            self._tick_observer()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._randomized_timeout:
                self._reset_election_timer()
                self._campaign(transfer=False)

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.settings.election_ticks:
            self._election_elapsed = 0
            if self.settings.check_quorum and not self._quorum_active():
                self._become_follower(self.term, NO_NODE)  # cut off from a majority: step down
                return
            if self.transfer_target != NO_NODE:
                self._abort_transfer()
            self._drop_silent_observers()
        if self.transfer_target != NO_NODE:
            self._transfer_elapsed += 1
        if self._heartbeat_elapsed >= self.settings.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat(context=0)

    def _quorum_active(self) -> bool:
        active = int(self.is_voter) + sum(
            1 for node_id, p in self.progress.items() if p.recent_active and node_id in self.voters
        )
        for progress in self.progress.values():
            progress.recent_active = False
        return active >= self.quorum

    def _drop_silent_observers(self) -> None:
        silent_ticks = RAFT_OBSERVER_TIMEOUT_ELECTIONS * self.settings.election_ticks
        for node_id in [n for n in self.progress if n not in self.voters]:
            last = self.progress[node_id].last_contact_tick
            if last is None or self._ticks - last > silent_ticks:
                del self.progress[node_id]

    def _tick_observer(self) -> None:
        """An observer never campaigns: when no leader has spoken for an election timeout it asks
        every voter for the log (the leader answers), and asks again every few ticks until one does."""
        self._election_elapsed += 1
        if self._election_elapsed < self._randomized_timeout:
            return
        self.leader_id = NO_NODE
        self._election_elapsed = self._randomized_timeout - max(1, self.settings.election_ticks // 4)
        targets = set(self.voters) | ({self._leader_hint} if self._leader_hint != NO_NODE else set())
        for target in sorted(targets - {self.id}):
            self._send_fetch(target)

    def _send_fetch(self, to: int) -> None:
        self._send(
            Message(MsgType.FETCH, to, self.id, self.term, log_term=self.log.last_term, index=self.log.last_index)
        )

    # -- elections -----------------------------------------------------------------------------

    def _campaign(self, transfer: bool) -> None:
        if not self.can_campaign:
            return
        if self.settings.pre_vote and not transfer:
            self._become_pre_candidate()
            kind, term = MsgType.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            kind, term = MsgType.VOTE, self.term
        self.votes = {self.id: True}
        if self._tally() >= self.quorum:  # a single-node cluster
            self._won(kind)
            return
        for voter in self._others():
            self._send(
                Message(
                    kind,
                    voter,
                    self.id,
                    term,
                    log_term=self.log.last_term,
                    index=self.log.last_index,
                    transfer=transfer,
                )
            )

    def _tally(self) -> int:
        return sum(1 for voter, granted in self.votes.items() if granted and voter in self.voters)

    def _won(self, kind: MsgType) -> None:
        if kind == MsgType.PRE_VOTE:
            self._campaign_for_real()
        else:
            self._become_leader()

    def _campaign_for_real(self) -> None:
        self._become_candidate()
        self.votes = {self.id: True}
        if self._tally() >= self.quorum:
            self._become_leader()
            return
        for voter in self._others():
            self._send(
                Message(MsgType.VOTE, voter, self.id, self.term, log_term=self.log.last_term, index=self.log.last_index)
            )

    def _in_lease(self) -> bool:
        """We heard from a live leader within the minimum election timeout (leader stickiness)."""
        return (
            self.settings.check_quorum
            and self.leader_id != NO_NODE
            and self._election_elapsed < self.settings.election_ticks
        )

    def _handle_vote_request(self, msg: Message) -> None:
        pre = msg.type == MsgType.PRE_VOTE
        can_vote = (
            self.vote == msg.frm
            or (self.vote == NO_NODE and self.leader_id == NO_NODE)
            or (pre and msg.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(msg.index, msg.log_term)
        response = MsgType.PRE_VOTE_RESP if pre else MsgType.VOTE_RESP
        # A granted pre-vote carries the term it was asked about, so the candidate can count it;
        # a refusal carries our own term, so a candidate behind us learns it.
        term = msg.term if pre and granted else self.term
        self._send(Message(response, msg.frm, self.id, term, reject=not granted))
        if granted and not pre:
            self.vote = msg.frm
            self._reset_election_timer()

    def _handle_vote_response(self, msg: Message) -> None:
        expected = MsgType.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MsgType.VOTE_RESP
        if msg.type != expected or self.role not in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            return
        if msg.frm not in self.voters:
            return
        self.votes.setdefault(msg.frm, not msg.reject)
        granted = self._tally()
        rejected = sum(1 for voter, granted in self.votes.items() if not granted and voter in self.voters)
        if granted >= self.quorum:
            self._won(MsgType.PRE_VOTE if self.role == Role.PRE_CANDIDATE else MsgType.VOTE)
        elif rejected >= self.quorum:
            self._become_follower(self.term, NO_NODE)

    # -- message handling ----------------------------------------------------------------------

    def step(self, msg: Message) -> None:
        if msg.to != self.id or msg.frm == self.id:
            return
        if msg.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            if self.role == Role.LEADER and msg.frm not in self.voters:
                # A removed voter that missed its removal campaigns: replicate to it instead, so it
                # learns it was removed (a FETCH in all but name).
                self._handle_fetch(msg)
                return
            # Otherwise answered whatever our own configuration says (dissertation 4.1): a new voter
            # that has not received the entry adding it may hold a vote the candidate needs.
        if not self._step_term(msg):
            return
        if msg.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote_request(msg)
        elif self.role == Role.LEADER:
            self._step_leader(msg)
        else:
            self._step_follower_or_candidate(msg)

    def _step_term(self, msg: Message) -> bool:
        """Term bookkeeping common to every message; False when the message is to be dropped."""
        if msg.term > self.term:
            if msg.type in (MsgType.VOTE, MsgType.PRE_VOTE):
                if not msg.transfer and self._in_lease():
                    return False  # a live leader exists: ignore the disruptive candidate
                if msg.type == MsgType.PRE_VOTE:
                    return True  # never change term for a pre-vote
                self._become_follower(msg.term, NO_NODE)
                return True
            if msg.type == MsgType.PRE_VOTE_RESP and not msg.reject:
                return True  # granted pre-votes carry the future term
            leader = msg.frm if msg.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT) else NO_NODE
            self._become_follower(msg.term, leader)
            return True
        if msg.term < self.term:
            if msg.type == MsgType.FETCH:
                return True  # an observer that has not heard of this term yet: the leader answers it
            if msg.type == MsgType.FETCH_RESP:
                return True  # a voter behind us may still name a leader worth asking
            if msg.type in (MsgType.APPEND, MsgType.HEARTBEAT) and self.settings.check_quorum:
                # A stale leader: tell it our term so it steps down (needed with check-quorum,
                # since we ignore its disrupting votes).
                self._send(Message(MsgType.APPEND_RESP, msg.frm, self.id, self.term))
            elif msg.type == MsgType.PRE_VOTE:
                self._send(Message(MsgType.PRE_VOTE_RESP, msg.frm, self.id, self.term, reject=True))
            return False
        return True

    def _step_follower_or_candidate(self, msg: Message) -> None:
        if msg.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT):
            if self.role != Role.FOLLOWER:
                self._become_follower(self.term, msg.frm)
            self._set_leader(msg.frm)
            self._election_elapsed = 0
            if msg.type == MsgType.APPEND:
                self._handle_append(msg)
            elif msg.type == MsgType.HEARTBEAT:
                self._handle_heartbeat(msg)
            else:
                self._handle_snapshot(msg)
        elif msg.type in (MsgType.VOTE_RESP, MsgType.PRE_VOTE_RESP):
            self._handle_vote_response(msg)
        elif msg.type == MsgType.TIMEOUT_NOW and self.role == Role.FOLLOWER and self.can_campaign:
            self._campaign(transfer=True)
        elif msg.type == MsgType.FETCH and self.leader_id not in (NO_NODE, msg.frm):
            address = self.voter_addresses.get(self.leader_id, "")
            self._send(
                Message(MsgType.FETCH_RESP, msg.frm, self.id, self.term, leader=self.leader_id, leader_address=address)
            )
        elif msg.type == MsgType.FETCH_RESP and self.leader_id == NO_NODE and msg.leader not in (NO_NODE, self.id):
            self._leader_hint = msg.leader
            self._send_fetch(msg.leader)

    def _handle_append(self, msg: Message) -> None:
        if msg.index < self.log.committed:
            self._send(Message(MsgType.APPEND_RESP, msg.frm, self.id, self.term, index=self.log.committed))
            return
        if not self.log.matches(msg.index, msg.log_term):
            hint_index, hint_term = self.log.conflict_hint(msg.index, msg.log_term)
            self._send(
                Message(
                    MsgType.APPEND_RESP,
                    msg.frm,
                    self.id,
                    self.term,
                    index=msg.index,
                    reject=True,
                    reject_hint=hint_index,
                    log_term=hint_term,
                )
            )
            return
        conflict = self.log.find_conflict(msg.entries)
        if conflict:
            self._append([e for e in msg.entries if e.index >= conflict])
        last_new = msg.index + len(msg.entries)
        self.log.commit_to(min(msg.commit, last_new))
        self._send(Message(MsgType.APPEND_RESP, msg.frm, self.id, self.term, index=last_new))

    def _handle_heartbeat(self, msg: Message) -> None:
        # The leader sends min(match, commit): we hold every entry up to it, so no clamp here.
        self.log.commit_to(msg.commit)
        self._send(Message(MsgType.HEARTBEAT_RESP, msg.frm, self.id, self.term, context=msg.context))

    def _handle_snapshot(self, msg: Message) -> None:
        snapshot = msg.snapshot
        if snapshot is None or snapshot.index <= self.log.committed:
            self._send(Message(MsgType.APPEND_RESP, msg.frm, self.id, self.term, index=self.log.committed))
            return
        if self.log.matches(snapshot.index, snapshot.term):
            # We already hold the entries: just fast-forward the commit point.
            self.log.commit_to(snapshot.index)
        else:
            self.log.restore(snapshot)
            self._snapshot_voters = decode_voters(snapshot.config) if snapshot.config else self._snapshot_voters
            self._config_entries = []
            self._refresh_config()
            self._pending_snapshot = snapshot
        self._send(Message(MsgType.APPEND_RESP, msg.frm, self.id, self.term, index=self.log.last_index))

    # -- leader --------------------------------------------------------------------------------

    def _step_leader(self, msg: Message) -> None:
        assert msg.type not in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT), (
            f"node {self.id} leads term {self.term} and got {msg.type.name} of that term from node {msg.frm}"
        )
        if msg.type == MsgType.FETCH:
            self._handle_fetch(msg)
            return
        progress = self.progress.get(msg.frm)
        if progress is None:
            return
        progress.recent_active = True
        progress.last_contact_tick = self._ticks
        if msg.type == MsgType.APPEND_RESP:
            self._handle_append_response(msg, progress)
        elif msg.type == MsgType.HEARTBEAT_RESP:
            # The follower is reachable: unblock a probe or a full pipeline whose messages were lost.
            progress.probe_sent = False
            if (
                progress.state == ProgressState.REPLICATE
                and len(progress.inflight) >= self.settings.max_inflight_messages
            ):
                progress.inflight.pop(0)
            if progress.match < self.log.last_index:
                self._send_append(msg.frm, progress)
            else:
                progress.last_caught_up_tick = self._ticks
            if msg.context:
                self._ack_read(msg.context, msg.frm)

    def _handle_fetch(self, msg: Message) -> None:
        """An observer asks for the log: replicate to it (probing from the end it reports)."""
        progress = self.progress.get(msg.frm)
        if progress is None:
            if msg.frm in self.voters:
                return  # a voter's progress exists from the start of the term; a stray FETCH
            if sum(1 for n in self.progress if n not in self.voters) >= RAFT_MAX_OBSERVERS:
                return  # full: it asks again, and a silent observer's place frees up
            progress = Progress(match=0, next=min(msg.index, self.log.last_index) + 1)
            self.progress[msg.frm] = progress
        progress.recent_active = True
        progress.last_contact_tick = self._ticks
        progress.probe_sent = False
        self._send_append(msg.frm, progress)

    def _handle_append_response(self, msg: Message, progress: Progress) -> None:
        if msg.reject:
            self._handle_reject(msg, progress)
            return
        moved = progress.acknowledge(msg.index)
        if progress.match >= self.log.last_index:
            progress.last_caught_up_tick = self._ticks
        if progress.state == ProgressState.SNAPSHOT and progress.match >= progress.pending_snapshot:
            progress.become_replicate()
        elif progress.state == ProgressState.PROBE and (moved or progress.match == msg.index):
            progress.become_replicate()
        if moved and self._maybe_commit():
            self._broadcast_pending = True
        elif progress.next <= self.log.last_index:
            self._send_append(msg.frm, progress)
        if msg.frm == self.transfer_target and progress.match == self.log.last_index:
            self._send(Message(MsgType.TIMEOUT_NOW, msg.frm, self.id, self.term))

    def _handle_reject(self, msg: Message, progress: Progress) -> None:
        if msg.index <= progress.match:
            return  # stale: that part of the log is known to match
        if progress.state == ProgressState.PROBE and msg.index != progress.next - 1:
            return  # the answer to an older probe
        hint = msg.reject_hint
        if msg.log_term > 0 and hint > self.log.snapshot_index:
            # Skip back over the follower's whole conflicting term (etcd's findConflictByTerm).
            hint, _ = self.log.conflict_hint(hint, msg.log_term)
        progress.become_probe(min(msg.index, hint + 1))
        self._send_append(msg.frm, progress)

    def _maybe_commit(self) -> bool:
        # Only voters count: an observer holding an entry does not make it committed.
        matches = [p.match for node_id, p in self.progress.items() if node_id in self.voters]
        if self.is_voter:
            matches.append(self.log.stable_index)
        matches.sort(reverse=True)
        if len(matches) < self.quorum:
            return False
        candidate = matches[self.quorum - 1]
        # Figure 8 of the Raft paper: only an entry of the current term is committed by counting.
        if candidate > self.log.committed and self.log.term_at(candidate) == self.term:
            self.log.commit_to(candidate)
            self._release_waiting_reads()
            self._broadcast_pending = True
            self._maybe_step_down()
            return True
        return False

    def _send_append(self, to: int, progress: Progress) -> None:
        if progress.state == ProgressState.SNAPSHOT:
            return
        if progress.state == ProgressState.PROBE and progress.probe_sent:
            return
        if progress.state == ProgressState.REPLICATE and len(progress.inflight) >= self.settings.max_inflight_messages:
            return
        prev_index = progress.next - 1
        prev_term = self.log.term_at(prev_index)
        if prev_term is None:
            self._send_snapshot(to, progress)
            return
        high = min(self.log.last_index + 1, progress.next + self.settings.max_entries_per_message)
        entries = (
            tuple(self._limit_bytes(self.log.slice(progress.next, high)))
            if progress.next <= self.log.last_index
            else ()
        )
        self._send(
            Message(
                MsgType.APPEND,
                to,
                self.id,
                self.term,
                log_term=prev_term,
                index=prev_index,
                entries=entries,
                commit=self.log.committed,
            )
        )
        if progress.state == ProgressState.REPLICATE and entries:
            progress.next = entries[-1].index + 1
            progress.inflight.append(entries[-1].index)
        elif progress.state == ProgressState.PROBE:
            progress.probe_sent = True

    def _limit_bytes(self, entries: list[Entry]) -> list[Entry]:
        """The longest prefix (at least one entry) within max_bytes_per_message."""
        budget = self.settings.max_bytes_per_message
        for count, entry in enumerate(entries):
            budget -= len(entry.data) + RAFT_ENTRY_OVERHEAD_BYTES
            if budget < 0:
                return entries[: max(count, 1)]
        return entries

    def _send_snapshot(self, to: int, progress: Progress) -> None:
        snapshot = self._snapshot_for_followers
        if snapshot is None:
            return  # the application has not given us a snapshot yet; nothing to send
        progress.state, progress.pending_snapshot, progress.inflight = ProgressState.SNAPSHOT, snapshot.index, []
        progress.snapshot_sent_tick = self._ticks
        self._send(Message(MsgType.SNAPSHOT, to, self.id, self.term, snapshot=snapshot))

    def _entries_to_send(self) -> bool:
        """Some follower would get entries from an append now."""
        last = self.log.last_index
        return any(progress.next <= last for progress in self.progress.values())

    def _broadcast_append(self) -> None:
        for voter, progress in self.progress.items():
            self._send_append(voter, progress)

    def _broadcast_heartbeat(self, context: int) -> None:
        for voter, progress in self.progress.items():
            self._send(
                Message(
                    MsgType.HEARTBEAT,
                    voter,
                    self.id,
                    self.term,
                    commit=min(progress.match, self.log.committed),
                    context=context,
                )
            )
            if (
                progress.state == ProgressState.SNAPSHOT
                and self._ticks - progress.snapshot_sent_tick > 2 * self.settings.election_ticks
            ):
                # The snapshot (or its answer) was lost on the way: probe again, which resends it.
                progress.become_probe(progress.match + 1)

    # -- proposals, reads, transfer, compaction ------------------------------------------------

    def propose(self, data: bytes) -> int:
        if self.role != Role.LEADER:
            raise NotLeaderError(self.leader_id)
        if self.transfer_target != NO_NODE:
            raise NotLeaderError(self.transfer_target)
        if not data:
            raise ValueError("proposals must not be empty (b'' marks the leader's own empty entry)")
        if len(data) > self.settings.max_entry_bytes:
            raise ValueError(f"a proposal of {len(data)} bytes exceeds max_entry_bytes {self.settings.max_entry_bytes}")
        index = self.log.last_index + 1
        if is_config(data):
            raise ValueError("configuration entries are proposed by propose_config_change")
        self._append([Entry(self.term, index, data)])
        self._broadcast_pending = True
        return index

    def propose_config_change(self, add: tuple[int, str] | None = None, remove: int | None = None) -> int:
        """Appends a configuration entry adding one voter (node id, address) or removing one; it is
        in force here at once, and on each node as soon as that node holds it. Returns its index."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.leader_id)
        if self.transfer_target != NO_NODE:
            raise NotLeaderError(self.transfer_target)
        if self.config_index > self.log.committed:
            raise MembershipError(
                "REQUEST_TIMED_OUT",
                f"the voter change at index {self.config_index} is not committed yet; one change at a time",
            )
        if self.log.term_at(self.log.committed) != self.term:
            raise MembershipError("REQUEST_TIMED_OUT", f"leader {self.id} has not committed in term {self.term} yet")
        voters = changed_voters(self.voter_addresses, add, remove)
        if add is not None:
            progress = self.progress.get(add[0])
            if progress is None or progress.match < self.log.committed:
                raise MembershipError(
                    "REQUEST_TIMED_OUT",
                    f"node {add[0]} has not caught up with leader {self.id} as an observer yet "
                    f"(at {progress.match if progress else 'unknown'}, commit {self.log.committed})",
                )
        index = self.log.last_index + 1
        self._append([Entry(self.term, index, encode_voters(voters))])
        self._broadcast_pending = True
        return index

    # -- configuration -------------------------------------------------------------------------

    def _append(self, entries: list[Entry]) -> None:
        """Every entry enters the log here, so the configuration follows the log: a truncation
        drops the configuration entries it removes, an appended one is in force at once."""
        if not entries:
            return
        first = entries[0].index
        changed = False
        if self._config_entries and self._config_entries[-1][0] >= first:
            self._config_entries = [(i, v) for i, v in self._config_entries if i < first]
            changed = True
        self.log.append(entries)
        for entry in entries:
            if is_config(entry.data):
                self._config_entries.append((entry.index, decode_voters(entry.data)))
                changed = True
        if changed:
            self._refresh_config()

    def _refresh_config(self) -> None:
        if self._config_entries:
            self.config_index, voters = self._config_entries[-1]
        else:
            self.config_index, voters = self.log.snapshot_index, self._snapshot_voters
        before = set(self.voters)
        self.voter_addresses = dict(voters)
        self.voters = sorted(voters)
        assert self.voters, f"node {self.id}: a configuration without voters at {self.config_index}"
        if self.role == Role.LEADER:
            for added in set(self.voters) - before - {self.id}:
                if added not in self.progress:  # not an observer of ours (a log replayed, a truncation)
                    self.progress[added] = Progress(match=0, next=self.log.last_index + 1)
                    self.progress[added].recent_active = True
                    self.progress[added].last_contact_tick = self._ticks
            # A removed voter keeps its progress: it follows as an observer until it goes silent.

    def config_at(self, index: int) -> dict[int, str]:
        """The voter set in force at `index` (at or after the snapshot point)."""
        voters = self._snapshot_voters
        for config_index, config in self._config_entries:
            if config_index > index:
                break
            voters = config
        return voters

    def _maybe_step_down(self) -> None:
        """A leader that removed itself: once the change is committed, hand leadership to the most
        caught-up voter and step down; it follows as an observer from then on."""
        if self.role != Role.LEADER or self.is_voter or self.log.committed < self.config_index:
            return
        caught_up = [v for v in self.voters if v in self.progress and self.progress[v].match == self.log.last_index]
        if caught_up:
            self._send(Message(MsgType.TIMEOUT_NOW, caught_up[0], self.id, self.term))
        self._become_follower(self.term, NO_NODE)

    def read_index(self, request_id: int) -> None:
        """Starts a linearizable read; a ReadState(request_id, index) comes out of ready() once confirmed."""
        if self.role != Role.LEADER:
            raise NotLeaderError(self.leader_id)
        if request_id <= 0:
            raise ValueError("read request ids must be positive")
        if self.log.term_at(self.log.committed) != self.term:
            self._waiting_reads.append(request_id)  # wait until this leader has committed in its term
            return
        self._start_read(request_id)

    def _start_read(self, request_id: int) -> None:
        request = _ReadRequest(request_id, self.log.committed, {self.id} if self.is_voter else set())
        if len(request.acks) >= self.quorum:
            self._read_states.append(ReadState(request_id, request.index))
            return
        self._pending_reads.append(request)
        self._broadcast_heartbeat(context=request_id)

    def _release_waiting_reads(self) -> None:
        if self._waiting_reads and self.log.term_at(self.log.committed) == self.term:
            waiting, self._waiting_reads = self._waiting_reads, []
            for request_id in waiting:
                self._start_read(request_id)

    def _ack_read(self, request_id: int, voter: int) -> None:
        for position, request in enumerate(self._pending_reads):
            if request.request_id == request_id:
                if voter not in self.voters:
                    return  # an observer's heartbeat answer confirms nothing
                request.acks.add(voter)
                if len(request.acks) >= self.quorum:
                    # Heartbeats are answered in order, so every earlier read is confirmed too.
                    confirmed, self._pending_reads = (
                        self._pending_reads[: position + 1],
                        self._pending_reads[position + 1 :],
                    )
                    self._read_states.extend(ReadState(r.request_id, r.index) for r in confirmed)
                return

    def transfer_leadership(self, target: int) -> None:
        if self.role != Role.LEADER:
            raise NotLeaderError(self.leader_id)
        if target == self.id or target not in self.progress or target not in self.voters:
            raise ValueError(f"cannot transfer leadership to {target}: not another voter")
        self.transfer_target = target
        self._transfer_elapsed = 0
        self._election_elapsed = 0  # the transfer must finish within one election timeout
        progress = self.progress[target]
        if progress.match == self.log.last_index:
            self._send(Message(MsgType.TIMEOUT_NOW, target, self.id, self.term))
        else:
            self._send_append(target, progress)

    def _abort_transfer(self) -> None:
        self.transfer_target = NO_NODE
        self._transfer_elapsed = 0

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application has a snapshot of its state at `index` (<= applied): drop earlier entries."""
        if index > self.log.applied:
            raise ValueError(f"cannot snapshot at {index}: only {self.log.applied} is applied")
        term = self.log.term_at(index)
        if term is None:
            raise ValueError(f"index {index} is already compacted")
        voters = self.config_at(index)
        snapshot = Snapshot(index, term, data, encode_voters(voters))
        self.log.compact(index, term)
        self._snapshot_voters = voters
        self._config_entries = [(i, v) for i, v in self._config_entries if i > index]
        self._snapshot_for_followers = snapshot
        return snapshot

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """At start: the latest persisted snapshot, for followers that fall behind it."""
        self._snapshot_for_followers = snapshot

    # -- ready / advance -----------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def has_ready(self) -> bool:
        return bool(
            self._broadcast_pending
            or self._msgs
            or self._read_states
            or self._pending_snapshot
            or self.hard_state != self._prev_hard_state
            or self.log.has_unstable()
            or self.log.has_to_apply()
            or self.log.truncated_from is not None
        )

    def ready(self) -> Ready | None:
        """The next batch of work; call advance() with it once done, before asking for another.

        A leader's broadcast that would carry no entries (only a new commit index) is held for
        one Ready when this one hands out committed entries: what applying them sets off (the
        controller proposing the decisions that waited for them) then rides the same append,
        one message per follower instead of two. The next ready() sends it in any case (advance()
        has taken the entries), so it is late by one Ready at most."""
        held = False
        if self._broadcast_pending and self.role == Role.LEADER:
            held = self.log.has_to_apply() and not self._entries_to_send()
            if not held:
                self._broadcast_append()
        self._broadcast_pending = held
        if not self.has_ready():
            return None
        hard = self.hard_state
        messages, self._msgs = self._msgs, []
        read_states, self._read_states = self._read_states, []
        return Ready(
            hard_state=hard if hard != self._prev_hard_state else None,
            truncate_from=self.log.truncated_from,
            entries=self.log.unstable(),
            snapshot=self._pending_snapshot,
            messages=messages,
            committed_entries=self.log.to_apply(),
            read_states=read_states,
        )

    def advance(self, ready: Ready) -> None:
        if ready.hard_state is not None:
            self._prev_hard_state = ready.hard_state
        if ready.snapshot is not None and self._pending_snapshot is ready.snapshot:
            self._pending_snapshot = None
            self._snapshot_for_followers = ready.snapshot
        if ready.truncate_from is not None and self.log.truncated_from == ready.truncate_from:
            self.log.truncated_from = None
        if ready.entries:
            last = ready.entries[-1]
            # Still our entries (no truncation or snapshot replaced them meanwhile): persisted now.
            if self.log.matches(last.index, last.term):
                assert self.log.stable_index <= last.index, (
                    f"stable index {self.log.stable_index} is past the entries just persisted (up to {last.index})"
                )
                self.log.stable_index = last.index
        if ready.committed_entries:
            self.log.applied_to(ready.committed_entries[-1].index)
        if self.role == Role.LEADER and self._maybe_commit():
            self._broadcast_pending = True
