"""One consumer group of the next-generation protocol (KIP-848), as a pure state machine.

The coordinator feeds it heartbeats, leaves, the clock and the topics' partition counts; it
answers with each member's epoch and the partitions the member may own now. Nothing here does
I/O: ``raftlog.groups.coordinator`` persists what changed and serves it over gRPC.

Epochs. The group epoch moves on any change of members, subscriptions or the subscribed topics'
partitions; the target assignment (computed by the group's assignor) is then recomputed and
carries that epoch. Each member has its own member epoch and reaches the target one step at a
time (reconciliation):

- a partition the member owns but the target gives to another is *revoked* first: the member is
  told to stop owning it and stays at its epoch (UNREVOKED_PARTITIONS) until a heartbeat says it
  no longer owns it, or it is fenced after its rebalance timeout;
- a partition the target gives the member is *handed over* only once no other member owns it or
  is still revoking it (UNRELEASED_PARTITIONS until then); the member moves to the target epoch;
- members whose partitions do not move go to the new epoch at once and keep consuming.

Invariant (checked after every change): no partition is owned (assigned or being revoked) by two
members at once.

Static members (``group.instance.id``), Kafka's rules: a member joining with an instance id
that a live member holds (it has not left with epoch -2 and its session has not run out) is
refused with UNRELEASED_INSTANCE_ID; one that left with -2 is replaced by the newcomer, which
takes over its partitions and epoch; a heartbeat or leave from the replaced incarnation (its
member id no longer holds the instance id) is FENCED_INSTANCE_ID.

Offset commits are fenced by member epoch (``validate_commit``): STALE_MEMBER_EPOCH for an epoch
that is not the member's, UNKNOWN_MEMBER_ID for a member the group does not have; a commit from
outside the protocol (manual ``assign()``, admin) is allowed while the group has no members.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from raftlog.errors import RaftlogError
from raftlog.groups.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, TopicPartition


def offsets_expired(
    has_members: bool, empty_since_ms: int, newest_commit_ms: int, now_ms: int, retention_ms: int
) -> bool:
    """Whether a group's committed offsets are past offsets.retention (Kafka's rule for a group
    of the consumer protocol): never while it has members; once it has been empty for the
    retention and no offset was committed within it (e.g. by an admin's reset-offsets)."""
    assert retention_ms > 0, f"retention_ms must be positive, got {retention_ms}"
    if has_members:
        return False
    return now_ms - empty_since_ms >= retention_ms and now_ms - newest_commit_ms >= retention_ms


JOIN_EPOCH = 0  # a member joining (or re-joining) sends member epoch 0
LEAVE_EPOCH = -1  # a member leaving for good
STATIC_LEAVE_EPOCH = -2  # a static member leaving for a while (group.instance.id): its partitions wait for it


class GroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    subscribed_topics: frozenset[str]
    subscribed_regex: str | None
    rebalance_timeout_ms: int
    session_deadline_ms: int
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: frozenset[TopicPartition] = frozenset()
    revoking: frozenset[TopicPartition] = frozenset()
    revocation_deadline_ms: int | None = None
    left_static: bool = False  # a static member that left with epoch -2 and may come back
    # Which topics a regex subscription may match: the member's principal's Describe permission,
    # given by the edge with each heartbeat (the group stays pure); None when ACLs are off. Not
    # persisted: a member restored from its record (`restored`) matches only topics it was
    # assigned until its next heartbeat brings the predicate again.
    describable: Callable[[str], bool] | None = None
    restored: bool = False

    def owned(self) -> frozenset[TopicPartition]:
        return self.assigned | self.revoking


@dataclass(frozen=True)
class Heartbeat:
    """One ConsumerGroupHeartbeat; None fields mean "unchanged since the last heartbeat"."""

    member_id: str
    member_epoch: int
    instance_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 60_000
    subscribed_topics: tuple[str, ...] | None = None
    subscribed_regex: str | None = None
    server_assignor: str | None = None
    owned: frozenset[TopicPartition] | None = None
    # Whether the heartbeat's principal may Describe a topic (its regex matches only those, as
    # Kafka 4's regex resolution); None: ACLs are off.
    describable: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class HeartbeatAnswer:
    member_id: str
    member_epoch: int
    assignment: frozenset[TopicPartition]


@dataclass
class GroupSettings:
    session_timeout_ms: int
    heartbeat_interval_ms: int


@dataclass
class ConsumerGroup:
    group_id: str
    settings: GroupSettings
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor: str = DEFAULT_ASSIGNOR
    members: dict[str, Member] = field(default_factory=dict)
    target: dict[str, frozenset[TopicPartition]] = field(default_factory=dict)
    # The subscribed topics' partition counts the target was computed from.
    target_partition_counts: dict[str, int] = field(default_factory=dict)
    deleted: bool = False
    rebalances: int = 0  # group epoch bumps, for metrics

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> GroupState:
        if self.deleted:
            return GroupState.DEAD
        if not self.members:
            return GroupState.EMPTY
        if self.assignment_epoch < self.group_epoch:
            return GroupState.ASSIGNING
        if any(
            m.member_epoch != self.assignment_epoch or m.state is not MemberState.STABLE for m in self.members.values()
        ):
            return GroupState.RECONCILING
        return GroupState.STABLE

    def subscribed_topic_names(self, topic_names: Mapping[str, int]) -> set[str]:
        return {t for m in self.members.values() for t in self._resolve(m, topic_names)}

    def _resolve(self, member: Member, topic_names: Mapping[str, int]) -> frozenset[str]:
        if member.subscribed_regex is None:
            return member.subscribed_topics  # named topics were authorized (Describe) by the edge
        pattern = re.compile(member.subscribed_regex)
        # Internal topics (__consumer_offsets) are never matched by a pattern, as in Kafka.
        matched = frozenset(t for t in topic_names if not t.startswith("__") and pattern.fullmatch(t))
        if member.restored:
            had = member.owned() | self.target.get(member.member_id, frozenset())
            return matched & {topic for topic, _ in had}
        if member.describable is not None:
            # A topic the principal may not Describe is not matched (Kafka 4): it is neither
            # assigned nor refused at fetch time, and the consumer does not learn it exists.
            return frozenset(t for t in matched if member.describable(t))
        return matched

    # -- heartbeats ---------------------------------------------------------------------------

    def heartbeat(self, hb: Heartbeat, now_ms: int, partitions_per_topic: Mapping[str, int]) -> HeartbeatAnswer:
        """Handles one heartbeat; raises RaftlogError for a fenced or unknown member, a bad regex
        or an unknown assignor. A leave answers with the epoch the member left with."""
        if self.deleted:
            raise RaftlogError("GROUP_ID_NOT_FOUND", f"group {self.group_id!r} was deleted")
        if hb.server_assignor is not None and hb.server_assignor not in ASSIGNORS:
            raise RaftlogError(
                "UNSUPPORTED_ASSIGNOR", f"assignor {hb.server_assignor!r} is not one of {', '.join(sorted(ASSIGNORS))}"
            )
        if hb.subscribed_regex is not None:
            try:
                re.compile(hb.subscribed_regex)
            except re.error as exc:
                raise RaftlogError(
                    "INVALID_REGULAR_EXPRESSION", f"subscription pattern {hb.subscribed_regex!r}: {exc}"
                ) from None
        if hb.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(hb)
        member = self._member_for(hb, now_ms)
        member.describable, member.restored = hb.describable, False
        member.session_deadline_ms = now_ms + self.settings.session_timeout_ms
        member.rebalance_timeout_ms = hb.rebalance_timeout_ms or member.rebalance_timeout_ms
        changed = False
        if hb.subscribed_topics is not None and hb.subscribed_regex is None:
            topics = frozenset(hb.subscribed_topics)
            changed |= topics != member.subscribed_topics or member.subscribed_regex is not None
            member.subscribed_topics, member.subscribed_regex = topics, None
        if hb.subscribed_regex is not None:
            changed |= hb.subscribed_regex != member.subscribed_regex
            member.subscribed_topics, member.subscribed_regex = frozenset(), hb.subscribed_regex
        if hb.server_assignor is not None and hb.server_assignor != self.assignor:
            self.assignor = hb.server_assignor
            changed = True
        if changed or self._subscribed_counts(partitions_per_topic) != self.target_partition_counts:
            self._bump_epoch()
        if self.assignment_epoch < self.group_epoch:
            self._compute_target(partitions_per_topic)
        released = False
        if hb.owned is not None and member.revoking and not (hb.owned & member.revoking):
            member.revoking = frozenset()  # the member says it let go of them
            member.revocation_deadline_ms = None
            released = True
        self._reconcile(member, now_ms)
        if released:
            self._hand_over_released(member, now_ms)
        self.check_invariants()
        return HeartbeatAnswer(member.member_id, member.member_epoch, member.assigned)

    def _hand_over_released(self, releaser: Member, now_ms: int) -> None:
        """Partitions just released go at once to the members waiting for them (at the target
        epoch, nothing left to revoke, UNRELEASED_PARTITIONS), so the state persisted for the
        releaser's answer already carries theirs: their next heartbeat only reads it. Their epoch
        does not move (they are at the target epoch already), so nothing they send becomes stale.
        Until that heartbeat they stay UNRELEASED_PARTITIONS (the group is not STABLE while a
        member has not been told what it owns)."""
        for member in self.members.values():
            if (
                member is not releaser
                and member.state is MemberState.UNRELEASED_PARTITIONS
                and member.member_epoch == self.assignment_epoch
                and not member.revoking
                and member.assigned <= self.target.get(member.member_id, frozenset())
            ):
                self._reconcile(member, now_ms)
                member.state = MemberState.UNRELEASED_PARTITIONS  # STABLE once its heartbeat reads them

    def static_member(self, instance_id: str) -> Member | None:
        """The member that holds this group.instance.id, if any (at most one does)."""
        return next((m for m in self.members.values() if m.instance_id == instance_id), None)

    def _check_instance_holder(self, hb: Heartbeat) -> None:
        """Kafka's throwIfInstanceIdIsFenced: a heartbeat or leave that names an instance id held
        by another member comes from an incarnation that was replaced (a zombie)."""
        if hb.instance_id is None:
            return
        holder = self.static_member(hb.instance_id)
        if holder is not None and holder.member_id != hb.member_id:
            raise RaftlogError(
                "FENCED_INSTANCE_ID",
                f"member {hb.member_id!r} with instance id {hb.instance_id!r} was replaced by member "
                f"{holder.member_id!r}",
            )

    def _member_for(self, hb: Heartbeat, now_ms: int) -> Member:
        if hb.member_epoch == JOIN_EPOCH:
            if hb.instance_id is not None:
                previous = self.static_member(hb.instance_id)
                if previous is not None and previous.member_id != hb.member_id:
                    if not previous.left_static:
                        # Kafka's throwIfInstanceIdIsUnreleased: two live processes with one
                        # instance id; the one already in the group keeps it.
                        raise RaftlogError(
                            "UNRELEASED_INSTANCE_ID",
                            f"instance id {hb.instance_id!r} is held by member {previous.member_id!r}, which has "
                            "not left with epoch -2 and whose session has not run out",
                        )
                    return self._replace_static(previous, hb)
                # previous is this very member joining again (fenced, or its answer was lost):
                # it starts over below, as a dynamic member does.
            member_id = hb.member_id or uuid.uuid4().hex
            member = self.members.get(member_id)
            if member is not None:
                # A member that rejoins (after a fencing on its side, or a lost answer) starts over.
                self._remove(member_id)
            member = Member(
                member_id=member_id,
                instance_id=hb.instance_id,
                client_id=hb.client_id,
                client_host=hb.client_host,
                subscribed_topics=frozenset(hb.subscribed_topics or ()),
                subscribed_regex=hb.subscribed_regex,
                rebalance_timeout_ms=hb.rebalance_timeout_ms,
                session_deadline_ms=now_ms + self.settings.session_timeout_ms,
            )
            self.members[member_id] = member
            self._bump_epoch()
            return member
        self._check_instance_holder(hb)
        member = self.members.get(hb.member_id)
        if member is None:
            raise RaftlogError("UNKNOWN_MEMBER_ID", f"group {self.group_id!r} has no member {hb.member_id!r}")
        if hb.member_epoch != member.member_epoch:
            # A lost answer: the member may still be at its previous epoch, as long as it owns
            # nothing it was not given (Kafka accepts that case too).
            lost_answer = (
                hb.member_epoch == member.previous_member_epoch and hb.owned is not None and hb.owned <= member.assigned
            )
            if not lost_answer:
                raise RaftlogError(
                    "FENCED_MEMBER_EPOCH",
                    f"member {hb.member_id!r} sent epoch {hb.member_epoch}; its epoch is {member.member_epoch}",
                )
        if member.left_static:
            # It left with epoch -2: only a join (epoch 0) brings the instance back. A heartbeat
            # still in flight from before the leave must not undo it (Kafka keeps epoch -2 for the
            # left member, so such a heartbeat is fenced there too); else the restarted process
            # would find the instance id held (UNRELEASED_INSTANCE_ID).
            raise RaftlogError(
                "FENCED_MEMBER_EPOCH",
                f"member {hb.member_id!r} left the group with epoch -2; it joins again with epoch 0",
            )
        return member

    def _replace_static(self, previous: Member, hb: Heartbeat) -> Member:
        """A static member back (within its session): the new incarnation takes over the old
        one's partitions and epoch, and nothing moves."""
        old_id = previous.member_id
        del self.members[old_id]
        previous.member_id = hb.member_id or uuid.uuid4().hex
        previous.client_id, previous.client_host = hb.client_id, hb.client_host
        previous.left_static = False
        # The old incarnation let go of everything it was revoking when it stopped.
        previous.revoking = frozenset()
        previous.revocation_deadline_ms = None
        self.members[previous.member_id] = previous
        if old_id in self.target:
            self.target[previous.member_id] = self.target.pop(old_id)
        return previous

    def _leave(self, hb: Heartbeat) -> HeartbeatAnswer:
        self._check_instance_holder(hb)
        member = self.members.get(hb.member_id)
        if member is None:
            if hb.member_epoch == LEAVE_EPOCH:
                return HeartbeatAnswer(hb.member_id, LEAVE_EPOCH, frozenset())
            raise RaftlogError("UNKNOWN_MEMBER_ID", f"group {self.group_id!r} has no member {hb.member_id!r}")
        if hb.member_epoch == STATIC_LEAVE_EPOCH and member.instance_id is not None:
            member.left_static = True  # keeps its partitions until its session runs out
            member.revoking = frozenset()
            member.revocation_deadline_ms = None
            return HeartbeatAnswer(member.member_id, STATIC_LEAVE_EPOCH, frozenset())
        self._remove(member.member_id)
        self.check_invariants()
        return HeartbeatAnswer(member.member_id, LEAVE_EPOCH, frozenset())

    def _remove(self, member_id: str) -> None:
        del self.members[member_id]
        self._bump_epoch()

    def _bump_epoch(self) -> None:
        self.group_epoch += 1
        self.rebalances += 1

    def _subscribed_counts(self, partitions_per_topic: Mapping[str, int]) -> dict[str, int]:
        return {
            t: partitions_per_topic[t]
            for t in self.subscribed_topic_names(partitions_per_topic)
            if t in partitions_per_topic
        }

    def _compute_target(self, partitions_per_topic: Mapping[str, int]) -> None:
        subscriptions = {m.member_id: self._resolve(m, partitions_per_topic) for m in self.members.values()}
        current = {m: self.target.get(m, frozenset()) for m in subscriptions}
        self.target = ASSIGNORS[self.assignor].assign(subscriptions, partitions_per_topic, current)
        self.target_partition_counts = self._subscribed_counts(partitions_per_topic)
        self.assignment_epoch = self.group_epoch

    def _reconcile(self, member: Member, now_ms: int) -> None:
        if member.revoking:
            return  # waits for the member to let go first
        target = self.target.get(member.member_id, frozenset())
        if member.member_epoch == self.assignment_epoch and member.assigned == target:
            member.state = MemberState.STABLE
            return
        to_revoke = member.assigned - target
        if to_revoke:
            member.assigned = member.assigned - to_revoke
            member.revoking = to_revoke
            member.revocation_deadline_ms = now_ms + member.rebalance_timeout_ms
            member.state = MemberState.UNREVOKED_PARTITIONS
            return
        owned_by_others = {tp for m in self.members.values() if m is not member for tp in m.owned()}
        member.assigned = member.assigned | {tp for tp in target if tp not in owned_by_others}
        if member.member_epoch != self.assignment_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = self.assignment_epoch
        member.state = MemberState.STABLE if member.assigned == target else MemberState.UNRELEASED_PARTITIONS

    # -- time ---------------------------------------------------------------------------------

    def expire(self, now_ms: int) -> list[str]:
        """Removes members whose session ran out or that did not revoke within their rebalance
        timeout (fenced); returns their ids."""
        gone = [
            m.member_id
            for m in self.members.values()
            if m.session_deadline_ms <= now_ms
            or (m.revocation_deadline_ms is not None and m.revocation_deadline_ms <= now_ms)
        ]
        for member_id in gone:
            self._remove(member_id)
        if gone:
            self.check_invariants()
        return gone

    # -- offsets ------------------------------------------------------------------------------

    def validate_commit(self, member_id: str, member_epoch: int) -> None:
        if self.deleted:
            raise RaftlogError("GROUP_ID_NOT_FOUND", f"group {self.group_id!r} was deleted")
        if member_epoch < 0 and not member_id:
            if self.members:
                raise RaftlogError(
                    "UNKNOWN_MEMBER_ID",
                    f"group {self.group_id!r} has active members; a commit from outside the group needs it empty",
                )
            return
        member = self.members.get(member_id)
        if member is None:
            raise RaftlogError("UNKNOWN_MEMBER_ID", f"group {self.group_id!r} has no member {member_id!r}")
        if member_epoch != member.member_epoch:
            raise RaftlogError(
                "STALE_MEMBER_EPOCH",
                f"commit with member epoch {member_epoch}; member {member_id!r} is at {member.member_epoch}",
            )

    # -- invariants ---------------------------------------------------------------------------

    def check_invariants(self) -> None:
        seen: dict[TopicPartition, str] = {}
        for member in self.members.values():
            assert not (member.assigned & member.revoking), (
                f"member {member.member_id} both owns and revokes {sorted(member.assigned & member.revoking)}"
            )
            for tp in member.owned():
                other = seen.setdefault(tp, member.member_id)
                assert other == member.member_id, (
                    f"group {self.group_id}: {tp} owned by {other} and {member.member_id} at once"
                )
            assert member.member_epoch <= self.assignment_epoch <= self.group_epoch, (
                f"epochs out of order: member {member.member_epoch}, target {self.assignment_epoch}, "
                f"group {self.group_epoch}"
            )
