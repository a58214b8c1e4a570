"""One group of Kafka's classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as a pure
state machine: the coordinator feeds it requests and the clock and delivers the answers it queues;
nothing here does I/O (``raftlog.groups.coordinator`` persists and answers, the Kafka listener
translates, ``raftlog/kafka/group_handlers.py``).

The assignment is the client's: the coordinator only runs the barriers, as Kafka's does.

- **Join barrier.** A member joining, a member changing its protocols, the leader rejoining, a member
  leaving or timing out moves the group to PreparingRebalance. Every member must send JoinGroup
  again (its request is held) until all known members have, or the longest rebalance timeout runs
  out (dynamic members that did not rejoin are removed; static ones are kept, Kafka's rule). The
  first rebalance of an empty group also waits ``initial_delay_ms`` for more members
  (``group.initial.rebalance.delay.ms``). Then the generation goes up, the protocol is chosen by
  the members' votes among those all of them support, a leader is chosen (the old one if it is
  still a member), and every held JoinGroup is answered; the leader's answer carries every
  member's metadata. The group is CompletingRebalance, or Empty when nobody is left.
- **Sync barrier.** SyncGroups are held until the leader's arrives with the assignment; then the
  group is Stable, the state to persist is taken (``stored``), and every held SyncGroup is
  answered with its member's part. Members that do not sync within the rebalance timeout are
  removed (a new rebalance).
- **Member ids.** A JoinGroup v4+ without one gets MEMBER_ID_REQUIRED and a new id, which it must
  use within its session timeout (Kafka's pending members). Static members (group.instance.id)
  need none: one that comes back with a new incarnation takes over the old member's place,
  assignment and the current generation without a rebalance (unless its protocols changed); the
  replaced member id is then FENCED_INSTANCE_ID.
- **Errors**, Kafka's: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION (a generation that is not the
  group's), REBALANCE_IN_PROGRESS (a heartbeat or SyncGroup while the join barrier is up: join
  again), INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT, FENCED_INSTANCE_ID.
- **Offset commits** (``validate_commit``) are fenced by generation; a commit from outside the
  group protocol (generation -1, no member id) only while the group is Empty.

Invariants (checked after every change): a leader is a member; a Stable or CompletingRebalance
group has a protocol every member supports; a member id is not both pending and a member; an
instance id belongs to one member at most.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass, field

from raftlog.errors import RaftlogError
from raftlog.groups.records import ClassicGroupValue, ClassicMemberRecord, consumer_protocol_topics

NO_GENERATION = -1  # a commit from outside the group protocol


class ClassicState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True)
class ClassicSettings:
    initial_delay_ms: int
    min_session_timeout_ms: int
    max_session_timeout_ms: int


@dataclass
class ClassicMember:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]  # (name, metadata) in the member's order of preference
    session_deadline_ms: int
    assignment: bytes = b""
    awaiting_join: bool = False  # its JoinGroup is held by the join barrier
    awaiting_sync: bool = False  # its SyncGroup is held by the sync barrier
    synced: bool = False  # sent SyncGroup in this generation

    def metadata(self, protocol: str | None) -> bytes:
        return next((data for name, data in self.protocols if name == protocol), b"")

    def supports(self) -> list[str]:
        return [name for name, _ in self.protocols]


@dataclass(frozen=True)
class JoinRequest:
    member_id: str  # "" for a new member
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    require_known_member_id: bool  # JoinGroup v4+: a new member gets MEMBER_ID_REQUIRED first


@dataclass(frozen=True)
class JoinAnswer:
    error: str  # "" for none (raftlog's error names are Kafka's)
    member_id: str
    generation: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple[tuple[str, str | None, bytes], ...] = ()  # (member id, instance id, metadata): the leader's
    skip_assignment: bool = False  # a static leader that came back: the assignment stands
    message: str = ""


@dataclass(frozen=True)
class Held:
    """A JoinGroup held by the join barrier: its answer comes through take_answers()."""

    member_id: str


@dataclass(frozen=True)
class SyncAnswer:
    error: str
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""
    message: str = ""


@dataclass(frozen=True)
class LeaveAnswer:
    member_id: str
    instance_id: str | None
    error: str = ""
    message: str = ""


@dataclass
class ClassicGroup:
    group_id: str
    settings: ClassicSettings
    generation: int = 0
    state: ClassicState = ClassicState.EMPTY
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, ClassicMember] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # member ids given out (MEMBER_ID_REQUIRED) -> deadline
    join_deadline_ms: int | None = None  # PreparingRebalance: the barrier completes by then
    initial_delay_until_ms: int = 0  # ... and not before this (the first rebalance of an empty group)
    delaying_initial: bool = False  # the rebalance under way started from Empty: newcomers extend the delay
    sync_deadline_ms: int | None = None  # CompletingRebalance: members not synced by then are removed
    stored: ClassicGroupValue | None = None  # what to persist: the state as of the last Stable or Empty
    join_answers: list[tuple[str, JoinAnswer]] = field(default_factory=list)  # held JoinGroups answered
    sync_answers: list[tuple[str, SyncAnswer]] = field(default_factory=list)  # held SyncGroups answered

    # -- reading --------------------------------------------------------------------------------

    def take_answers(self) -> tuple[list[tuple[str, JoinAnswer]], list[tuple[str, SyncAnswer]]]:
        """The answers to held requests that the last calls produced (each handed out once)."""
        joins, syncs = self.join_answers, self.sync_answers
        self.join_answers, self.sync_answers = [], []
        return joins, syncs

    def static_member(self, instance_id: str) -> ClassicMember | None:
        return next((m for m in self.members.values() if m.instance_id == instance_id), None)

    def subscribed_topics(self) -> set[str]:
        """The topics the members subscribe to (consumer protocol metadata of the chosen protocol)."""
        if self.protocol_type != "consumer":
            return set()
        return {t for m in self.members.values() for t in consumer_protocol_topics(m.metadata(self.protocol_name))}

    # -- JoinGroup ------------------------------------------------------------------------------

    def join(self, request: JoinRequest, now_ms: int) -> JoinAnswer | Held:
        """The answer now, or Held: the request waits and is answered through take_answers()."""
        if self.state is ClassicState.DEAD:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", f"group {self.group_id!r} is being deleted")
        lo, hi = self.settings.min_session_timeout_ms, self.settings.max_session_timeout_ms
        if not lo <= request.session_timeout_ms <= hi:
            raise RaftlogError(
                "INVALID_SESSION_TIMEOUT",
                f"session timeout {request.session_timeout_ms} ms is outside [{lo}, {hi}] "
                "(group.min.session.timeout.ms, group.max.session.timeout.ms)",
            )
        self._check_protocols(request)
        try:
            if not request.member_id:
                return self._join_new(request, now_ms)
            return self._join_known(request, now_ms)
        finally:
            self.check_invariants()

    def _check_protocols(self, request: JoinRequest) -> None:
        if not request.protocol_type or not request.protocols:
            raise RaftlogError("INCONSISTENT_GROUP_PROTOCOL", "a JoinGroup needs a protocol type and protocols")
        if not self.members:
            return
        if request.protocol_type != self.protocol_type:
            raise RaftlogError(
                "INCONSISTENT_GROUP_PROTOCOL",
                f"protocol type {request.protocol_type!r}; group {self.group_id!r} has {self.protocol_type!r}",
            )
        others = [m for m in self.members.values() if m.member_id != request.member_id]
        common = {name for name, _ in request.protocols}
        for m in others:
            common &= set(m.supports())
        if not common:
            raise RaftlogError(
                "INCONSISTENT_GROUP_PROTOCOL",
                f"none of {[name for name, _ in request.protocols]} is supported by every member of {self.group_id!r}",
            )

    def _new_member_id(self, request: JoinRequest) -> str:
        return f"{request.client_id or 'member'}-{uuid.uuid4()}"

    def _join_new(self, request: JoinRequest, now_ms: int) -> JoinAnswer | Held:
        if request.instance_id is not None:
            previous = self.static_member(request.instance_id)
            if previous is not None:
                return self._replace_static(previous, request, now_ms)
            return self._add_member(self._new_member_id(request), request, now_ms)
        member_id = self._new_member_id(request)
        if request.require_known_member_id:
            self.pending[member_id] = now_ms + request.session_timeout_ms
            return JoinAnswer("MEMBER_ID_REQUIRED", member_id, message="join again with this member id (KIP-394)")
        return self._add_member(member_id, request, now_ms)

    def _join_known(self, request: JoinRequest, now_ms: int) -> JoinAnswer | Held:
        member_id = request.member_id
        if member_id in self.pending:
            del self.pending[member_id]
            return self._add_member(member_id, request, now_ms)
        member = self._validate_member(member_id, request.instance_id)
        if self.state is ClassicState.PREPARING_REBALANCE:
            self._update(member, request, now_ms)
            member.awaiting_join = True
            self._check_join_barrier(now_ms)
            return Held(member_id)
        same = member.protocols == request.protocols
        if self.state is ClassicState.COMPLETING_REBALANCE and same:
            # Its JoinGroup answer was lost: the same answer again.
            return self._join_answer(member)
        if self.state is ClassicState.STABLE and same and member_id != self.leader_id:
            return self._join_answer(member)  # nothing changed: the current generation
        self._update(member, request, now_ms)
        member.awaiting_join = True
        self._prepare_rebalance(now_ms, f"member {member_id} rejoined")
        return Held(member_id)

    def _validate_member(self, member_id: str, instance_id: str | None) -> ClassicMember:
        """Kafka's validateMember: a replaced static incarnation is FENCED_INSTANCE_ID."""
        if instance_id is not None:
            holder = self.static_member(instance_id)
            if holder is not None and holder.member_id != member_id:
                raise RaftlogError(
                    "FENCED_INSTANCE_ID",
                    f"member {member_id!r} with instance id {instance_id!r} was replaced by {holder.member_id!r}",
                )
        member = self.members.get(member_id)
        if member is None:
            raise RaftlogError("UNKNOWN_MEMBER_ID", f"group {self.group_id!r} has no member {member_id!r}")
        if instance_id is not None and member.instance_id != instance_id:
            raise RaftlogError(
                "FENCED_INSTANCE_ID",
                f"member {member_id!r} has instance id {member.instance_id!r}, the request names {instance_id!r}",
            )
        return member

    def _update(self, member: ClassicMember, request: JoinRequest, now_ms: int) -> None:
        member.protocols = request.protocols
        member.client_id, member.client_host = request.client_id, request.client_host
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.session_deadline_ms = now_ms + request.session_timeout_ms

    def _add_member(self, member_id: str, request: JoinRequest, now_ms: int) -> JoinAnswer | Held:
        """Held: the new member's JoinGroup waits for the join barrier."""
        assert member_id not in self.members, f"member {member_id} added twice"
        if not self.members:
            self.protocol_type = request.protocol_type
        member = ClassicMember(
            member_id=member_id,
            instance_id=request.instance_id,
            client_id=request.client_id,
            client_host=request.client_host,
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            protocols=request.protocols,
            session_deadline_ms=now_ms + request.session_timeout_ms,
            awaiting_join=True,
        )
        self.members[member_id] = member
        if self.state is ClassicState.PREPARING_REBALANCE:
            if self.delaying_initial:
                # Kafka's delayed initial join: each newcomer gives others a little longer.
                assert self.join_deadline_ms is not None
                self.initial_delay_until_ms = min(now_ms + self.settings.initial_delay_ms, self.join_deadline_ms)
            self._check_join_barrier(now_ms)
        else:
            self._prepare_rebalance(now_ms, f"member {member_id} joined")
        return Held(member_id)

    def _replace_static(self, previous: ClassicMember, request: JoinRequest, now_ms: int) -> JoinAnswer | Held:
        """A static member's new incarnation: it takes the old member's place (Kafka's
        updateStaticMemberAndRebalance); the old id is fenced from now on."""
        old_id = previous.member_id
        new_id = self._new_member_id(request)
        fenced = f"instance id {request.instance_id!r} was taken over by member {new_id!r}"
        if previous.awaiting_join:
            self.join_answers.append((old_id, JoinAnswer("FENCED_INSTANCE_ID", old_id, message=fenced)))
        if previous.awaiting_sync:
            previous.awaiting_sync = False
            self.sync_answers.append((old_id, SyncAnswer("FENCED_INSTANCE_ID", message=fenced)))
        del self.members[old_id]
        previous.member_id = new_id
        self.members[new_id] = previous
        if self.leader_id == old_id:
            self.leader_id = new_id
        same = previous.protocols == request.protocols
        self._update(previous, request, now_ms)
        if self.state is ClassicState.STABLE and same:
            self.stored = self.value()  # the new member id is persisted before it is answered
            answer = self._join_answer(previous)
            if new_id == self.leader_id:
                return dataclasses.replace(answer, skip_assignment=True)
            return answer
        previous.awaiting_join = True
        if self.state is ClassicState.PREPARING_REBALANCE:
            self._check_join_barrier(now_ms)
        else:
            self._prepare_rebalance(now_ms, f"static member {request.instance_id} came back with new protocols")
        return Held(new_id)

    def _join_answer(self, member: ClassicMember) -> JoinAnswer:
        leader = member.member_id == self.leader_id
        members = (
            tuple((m.member_id, m.instance_id, m.metadata(self.protocol_name)) for m in self.members.values())
            if leader
            else ()
        )
        return JoinAnswer(
            "",
            member.member_id,
            self.generation,
            self.protocol_type,
            self.protocol_name,
            self.leader_id or "",
            members,
        )

    # -- the barriers ---------------------------------------------------------------------------

    def _prepare_rebalance(self, now_ms: int, why: str) -> None:
        assert self.state is not ClassicState.DEAD, f"group {self.group_id}: a rebalance of a dead group ({why})"
        if self.state is ClassicState.COMPLETING_REBALANCE:
            for m in self.members.values():
                m.assignment = b""
                if m.awaiting_sync:
                    m.awaiting_sync = False
                    self.sync_answers.append(
                        (m.member_id, SyncAnswer("REBALANCE_IN_PROGRESS", message=f"a new rebalance: {why}"))
                    )
        from_empty = self.state is ClassicState.EMPTY
        self.state = ClassicState.PREPARING_REBALANCE
        self.sync_deadline_ms = None
        timeout = max((m.rebalance_timeout_ms for m in self.members.values()), default=0)
        self.join_deadline_ms = now_ms + timeout
        self.delaying_initial = from_empty
        self.initial_delay_until_ms = (
            min(now_ms + self.settings.initial_delay_ms, now_ms + timeout) if from_empty else 0
        )
        self._check_join_barrier(now_ms)

    def _check_join_barrier(self, now_ms: int) -> None:
        if self.state is not ClassicState.PREPARING_REBALANCE:
            return
        everyone = all(m.awaiting_join for m in self.members.values()) and not self.pending
        assert self.join_deadline_ms is not None
        if (everyone and now_ms >= self.initial_delay_until_ms) or now_ms >= self.join_deadline_ms:
            self._complete_join(now_ms)

    def _complete_join(self, now_ms: int) -> None:
        for m in [m for m in self.members.values() if not m.awaiting_join and m.instance_id is None]:
            self._remove(m.member_id, "UNKNOWN_MEMBER_ID", "did not rejoin within the rebalance timeout")
        self.pending.clear()
        self.generation += 1
        self.join_deadline_ms = None
        self.initial_delay_until_ms = 0
        self.delaying_initial = False
        if not self.members:
            self.state = ClassicState.EMPTY
            self.protocol_name = self.leader_id = None
            self.stored = self.value()
            return
        self.protocol_name = self._select_protocol()
        leader = self.members.get(self.leader_id or "")
        if leader is None or not leader.awaiting_join:
            # A leader that did not rejoin (a static member kept) would never get the members'
            # metadata: one that rejoined leads (Kafka's maybeElectNewJoinedLeader).
            joined = [m.member_id for m in self.members.values() if m.awaiting_join]
            self.leader_id = joined[0] if joined else (self.leader_id if leader else next(iter(self.members)))
        self.state = ClassicState.COMPLETING_REBALANCE
        self.sync_deadline_ms = now_ms + max(m.rebalance_timeout_ms for m in self.members.values())
        for m in self.members.values():
            m.assignment = b""
            m.synced = False
            m.session_deadline_ms = now_ms + m.session_timeout_ms
            if m.awaiting_join:
                m.awaiting_join = False
                self.join_answers.append((m.member_id, self._join_answer(m)))

    def _select_protocol(self) -> str:
        """Kafka's vote: among the protocols every member supports, each member votes for the
        first of its own preference; the most votes win (ties: the first member's preference)."""
        members = list(self.members.values())
        candidates = set(members[0].supports())
        for m in members[1:]:
            candidates &= set(m.supports())
        assert candidates, f"group {self.group_id}: no protocol common to all members"
        votes: dict[str, int] = {}
        for m in members:
            choice = next(name for name in m.supports() if name in candidates)
            votes[choice] = votes.get(choice, 0) + 1
        order = [name for name in members[0].supports() if name in candidates]
        return max(order, key=lambda name: votes.get(name, 0))

    # -- SyncGroup ------------------------------------------------------------------------------

    def sync(
        self,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        now_ms: int,
    ) -> SyncAnswer | None:
        """The answer now, or None: held until the leader's assignment (take_answers())."""
        if self.state is ClassicState.DEAD:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", f"group {self.group_id!r} is being deleted")
        member = self._validate_member(member_id, instance_id)
        if generation != self.generation:
            raise RaftlogError(
                "ILLEGAL_GENERATION", f"generation {generation}; group {self.group_id!r} is at {self.generation}"
            )
        if (protocol_type is not None and protocol_type != self.protocol_type) or (
            protocol_name is not None and protocol_name != self.protocol_name
        ):
            raise RaftlogError(
                "INCONSISTENT_GROUP_PROTOCOL",
                f"{protocol_type}/{protocol_name}; the group's are {self.protocol_type}/{self.protocol_name}",
            )
        if self.state is ClassicState.PREPARING_REBALANCE:
            raise RaftlogError("REBALANCE_IN_PROGRESS", f"group {self.group_id!r} is rebalancing; join again")
        member.session_deadline_ms = now_ms + member.session_timeout_ms
        member.synced = True
        if self.state is ClassicState.STABLE:
            return self._sync_answer(member)
        assert self.state is ClassicState.COMPLETING_REBALANCE, f"a member in a {self.state} group"
        member.awaiting_sync = True
        if member_id == self.leader_id:
            for m in self.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            self.state = ClassicState.STABLE
            self.sync_deadline_ms = None
            self.stored = self.value()
            for m in self.members.values():
                if m.awaiting_sync:
                    m.awaiting_sync = False
                    self.sync_answers.append((m.member_id, self._sync_answer(m)))
        self.check_invariants()
        return None

    def _sync_answer(self, member: ClassicMember) -> SyncAnswer:
        return SyncAnswer("", self.protocol_type, self.protocol_name, member.assignment)

    def write_failed(self, now_ms: int, why: str) -> None:
        """The Stable state just taken could not be persisted: the held SyncGroups get `why`'s
        error from the coordinator, and the group rebalances (Kafka resets the assignment)."""
        if self.state is ClassicState.STABLE:
            self._prepare_rebalance(now_ms, why)
            self.check_invariants()

    # -- Heartbeat, LeaveGroup, commits --------------------------------------------------------

    def heartbeat(self, member_id: str, instance_id: str | None, generation: int, now_ms: int) -> None:
        """Raises the error the heartbeat answers with (REBALANCE_IN_PROGRESS: join again)."""
        if self.state is ClassicState.DEAD:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", f"group {self.group_id!r} is being deleted")
        member = self._validate_member(member_id, instance_id)
        if generation != self.generation:
            raise RaftlogError(
                "ILLEGAL_GENERATION", f"generation {generation}; group {self.group_id!r} is at {self.generation}"
            )
        member.session_deadline_ms = now_ms + member.session_timeout_ms
        if self.state is ClassicState.PREPARING_REBALANCE:
            raise RaftlogError("REBALANCE_IN_PROGRESS", f"group {self.group_id!r} is rebalancing; join again")

    def leave(self, leaving: list[tuple[str, str | None]], now_ms: int) -> list[LeaveAnswer]:
        """LeaveGroup: (member id, instance id) each; a member id "" with an instance id removes
        that static member (an admin's removal)."""
        answers = []
        removed = False
        for member_id, instance_id in leaving:
            try:
                if not member_id and instance_id is not None:
                    holder = self.static_member(instance_id)
                    if holder is None:
                        raise RaftlogError("UNKNOWN_MEMBER_ID", f"no member has instance id {instance_id!r}")
                    member_id = holder.member_id
                if member_id in self.pending:
                    del self.pending[member_id]
                    answers.append(LeaveAnswer(member_id, instance_id))
                    continue
                self._validate_member(member_id, instance_id)
                self._remove(member_id, "UNKNOWN_MEMBER_ID", "left the group")
                removed = True
                answers.append(LeaveAnswer(member_id, instance_id))
            except RaftlogError as exc:
                answers.append(LeaveAnswer(member_id, instance_id, exc.reason, exc.message))
        if removed or self.state is ClassicState.PREPARING_REBALANCE:
            self._after_removal(now_ms, "members left")
        self.check_invariants()
        return answers

    def _remove(self, member_id: str, error: str, why: str) -> None:
        member = self.members.pop(member_id)
        if member.awaiting_join:
            self.join_answers.append((member_id, JoinAnswer(error, member_id, message=why)))
        if member.awaiting_sync:
            self.sync_answers.append((member_id, SyncAnswer(error, message=why)))
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)

    def _after_removal(self, now_ms: int, why: str) -> None:
        if self.state in (ClassicState.STABLE, ClassicState.COMPLETING_REBALANCE):
            self._prepare_rebalance(now_ms, why)
        else:
            self._check_join_barrier(now_ms)

    def validate_commit(self, member_id: str, instance_id: str | None, generation: int, now_ms: int) -> None:
        """Kafka's validateOffsetCommit for a classic group."""
        if self.state is ClassicState.DEAD:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", f"group {self.group_id!r} is being deleted")
        if generation < 0 and not member_id and instance_id is None:
            if self.members:
                raise RaftlogError(
                    "UNKNOWN_MEMBER_ID",
                    f"group {self.group_id!r} has active members; a commit from outside the group needs it empty",
                )
            return
        member = self._validate_member(member_id, instance_id)
        if generation != self.generation:
            raise RaftlogError(
                "ILLEGAL_GENERATION",
                f"commit at generation {generation}; group {self.group_id!r} is at {self.generation}",
            )
        if self.state is ClassicState.COMPLETING_REBALANCE:
            # The member has this generation from its JoinGroup answer but no assignment yet.
            raise RaftlogError("REBALANCE_IN_PROGRESS", f"group {self.group_id!r} is completing a rebalance")
        member.session_deadline_ms = now_ms + member.session_timeout_ms

    # -- the clock ------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> list[str]:
        """Expires sessions, pending member ids and the barriers' timeouts; returns the ids of
        the members removed."""
        gone = []
        for member_id, deadline in list(self.pending.items()):
            if deadline <= now_ms:
                del self.pending[member_id]
        for m in list(self.members.values()):
            # A member whose JoinGroup or SyncGroup is held is alive (Kafka's shouldKeepAlive).
            if m.session_deadline_ms <= now_ms and not m.awaiting_join and not m.awaiting_sync:
                self._remove(m.member_id, "UNKNOWN_MEMBER_ID", "its session timed out")
                gone.append(m.member_id)
        if (
            self.state is ClassicState.COMPLETING_REBALANCE
            and self.sync_deadline_ms is not None
            and now_ms >= self.sync_deadline_ms
        ):
            for m in [m for m in self.members.values() if not m.synced]:
                self._remove(m.member_id, "UNKNOWN_MEMBER_ID", "did not sync within the rebalance timeout")
                gone.append(m.member_id)
            if self.state is ClassicState.COMPLETING_REBALANCE and self.sync_deadline_ms <= now_ms:
                self._prepare_rebalance(now_ms, "the sync barrier timed out")
        if gone:
            self._after_removal(now_ms, f"members {gone} timed out")
        else:
            self._check_join_barrier(now_ms)
        self.check_invariants()
        return gone

    def mark_dead(self) -> None:
        """Deleted (DeleteGroups, offsets retention): every held request is answered."""
        for member_id in list(self.members):
            self._remove(member_id, "COORDINATOR_NOT_AVAILABLE", "the group was deleted")
        self.state = ClassicState.DEAD

    # -- persistence ----------------------------------------------------------------------------

    def value(self, timestamp_ms: int = 0) -> ClassicGroupValue:
        members = tuple(
            ClassicMemberRecord(
                m.member_id,
                m.instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                m.metadata(self.protocol_name),
                m.assignment,
            )
            for m in self.members.values()
        )
        return ClassicGroupValue(
            self.protocol_type or "", self.generation, self.protocol_name, self.leader_id, timestamp_ms, members
        )

    @classmethod
    def restore(cls, group_id: str, settings: ClassicSettings, value: ClassicGroupValue, now_ms: int) -> ClassicGroup:
        """The group a new coordinator loads: Stable with its members (fresh sessions) or Empty."""
        group = cls(group_id, settings, generation=value.generation, protocol_type=value.protocol_type or None)
        for m in value.members:
            group.members[m.member_id] = ClassicMember(
                member_id=m.member_id,
                instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                session_timeout_ms=m.session_timeout_ms,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                protocols=((value.protocol or "", m.subscription),),
                session_deadline_ms=now_ms + m.session_timeout_ms,
                assignment=m.assignment,
                synced=True,
            )
        if group.members and value.protocol:
            group.state, group.protocol_name = ClassicState.STABLE, value.protocol
            group.leader_id = value.leader if value.leader in group.members else next(iter(group.members))
        else:
            group.members = {}
        group.stored = group.value()
        group.check_invariants()
        return group

    # -- invariants -----------------------------------------------------------------------------

    def check_invariants(self) -> None:
        if self.state is ClassicState.DEAD:
            return
        assert self.leader_id is None or self.leader_id in self.members, (
            f"group {self.group_id}: leader {self.leader_id} is not a member"
        )
        assert not (set(self.pending) & set(self.members)), (
            f"group {self.group_id}: {sorted(set(self.pending) & set(self.members))} both pending and members"
        )
        if self.state in (ClassicState.STABLE, ClassicState.COMPLETING_REBALANCE):
            assert self.members and self.leader_id is not None, f"group {self.group_id}: {self.state} without members"
            assert all(self.protocol_name in m.supports() for m in self.members.values()), (
                f"group {self.group_id}: protocol {self.protocol_name} is not supported by every member"
            )
        if self.state is ClassicState.EMPTY:
            assert not self.members, f"group {self.group_id}: Empty with members {sorted(self.members)}"
        instances = [m.instance_id for m in self.members.values() if m.instance_id is not None]
        assert len(instances) == len(set(instances)), f"group {self.group_id}: an instance id held twice: {instances}"
