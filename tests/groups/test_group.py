"""A consumer group's reconciliation (KIP-848), driven by simulated clients."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog.errors import Errors, RaftlogError
from raftlog.groups.group import ConsumerGroup, GroupSettings, GroupState, Heartbeat, offsets_expired

SESSION_MS = 10_000


class Client:
    """What a well-behaved consumer does: owns exactly what the last answer gave it."""

    def __init__(self, group: ConsumerGroup, topics=("t",), instance_id=None):
        self.group, self.topics, self.instance_id = group, topics, instance_id
        self.member_id, self.epoch, self.owned, self.alive = "", 0, frozenset(), True

    def heartbeat(self, now_ms, counts):
        answer = self.group.heartbeat(
            Heartbeat(
                self.member_id,
                self.epoch,
                instance_id=self.instance_id,
                subscribed_topics=self.topics,
                owned=self.owned,
            ),
            now_ms,
            counts,
        )
        self.member_id, self.epoch, self.owned = answer.member_id, answer.member_epoch, answer.assignment
        return answer

    def leave(self, now_ms, counts, epoch=-1):
        self.group.heartbeat(Heartbeat(self.member_id, epoch, instance_id=self.instance_id), now_ms, counts)
        self.owned, self.alive = frozenset(), False


def new_group():
    return ConsumerGroup("g", GroupSettings(session_timeout_ms=SESSION_MS, heartbeat_interval_ms=100))


def converge(clients, now, counts, rounds=6):
    for _ in range(rounds):
        for c in clients:
            if c.alive:
                c.heartbeat(now, counts)


def check_disjoint(clients):
    seen = {}
    for c in clients:
        if not c.alive:
            continue
        for tp in c.owned:
            assert tp not in seen, f"{tp} owned by {seen[tp]} and {c.member_id} at once"
            seen[tp] = c.member_id


def test_join_moves_only_the_newcomers_share_and_waits_for_revocation():
    group, counts = new_group(), {"t": 12}
    clients = [Client(group) for _ in range(3)]
    converge(clients, 0, counts)
    assert group.state is GroupState.STABLE
    before = {c.member_id: c.owned for c in clients}
    assert sorted(len(o) for o in before.values()) == [4, 4, 4]
    newcomer = Client(group)
    first = newcomer.heartbeat(1, counts)
    assert first.assignment == frozenset()  # everything is still owned by the others
    assert group.state is GroupState.RECONCILING
    converge(clients + [newcomer], 2, counts)
    assert group.state is GroupState.STABLE
    assert len(newcomer.owned) == 3
    for c in clients:
        assert c.owned <= before[c.member_id] and len(c.owned) == 3


def test_released_partitions_go_to_the_waiting_member_in_the_releasers_step():
    group, counts = new_group(), {"t": 4}
    a = Client(group)
    a.heartbeat(0, counts)
    newcomer = Client(group)
    assert newcomer.heartbeat(1, counts).assignment == frozenset()
    a.heartbeat(2, counts)  # told to revoke two partitions
    revoking = group.members[a.member_id].revoking
    assert len(revoking) == 2
    waiting = group.members[newcomer.member_id]
    assert not (waiting.assigned & revoking)
    a.heartbeat(3, counts)  # a let go of them (its owned no longer has them)
    # The coordinator persists this state for a's answer: it already gives them to the newcomer,
    # who is not told until its own next heartbeat, at an epoch that does not move.
    epoch = waiting.member_epoch
    assert waiting.assigned == revoking and waiting.member_epoch == epoch
    assert group.state is GroupState.RECONCILING  # not stable before the newcomer knows
    assert newcomer.heartbeat(4, counts).assignment == revoking and newcomer.epoch == epoch
    assert group.state is GroupState.STABLE


def test_a_heartbeat_from_before_a_static_leave_does_not_undo_it():
    group, counts = new_group(), {"t": 4}
    a = static_client(group, "a")
    a.heartbeat(0, counts)
    stale = Heartbeat(a.member_id, a.epoch, instance_id="host-a", owned=a.owned)
    a.leave(1, counts, epoch=-2)
    with pytest.raises(RaftlogError) as fenced:
        group.heartbeat(stale, 2, counts)  # sent before the leave, arriving after it
    assert fenced.value.error is Errors.FENCED_MEMBER_EPOCH
    restarted = static_client(group, "a-restarted")
    assert restarted.heartbeat(3, counts).assignment == stale.owned  # not UNRELEASED_INSTANCE_ID


def test_session_timeout_reassigns_a_dead_members_partitions():
    group, counts = new_group(), {"t": 6}
    a, b = Client(group), Client(group)
    converge([a, b], 0, counts)
    b.alive = False
    a.heartbeat(5_000, counts)
    assert group.expire(SESSION_MS - 1) == []
    assert group.expire(SESSION_MS) == [b.member_id]
    converge([a], SESSION_MS + 1, counts)
    assert len(a.owned) == 6 and group.state is GroupState.STABLE


def test_rebalance_timeout_fences_a_member_that_does_not_revoke():
    group, counts = new_group(), {"t": 4}
    a = Client(group)
    a.heartbeat(0, counts)
    group.heartbeat(Heartbeat("", 0, subscribed_topics=("t",)), 1, counts)
    # a is asked to revoke two partitions; it heartbeats but never lets go.
    answer = group.heartbeat(
        Heartbeat(a.member_id, a.epoch, rebalance_timeout_ms=500, owned=frozenset(("t", p) for p in range(4))),
        2,
        counts,
    )
    assert len(answer.assignment) == 2 and len(group.members[a.member_id].revoking) == 2
    assert group.expire(2 + 499) == []
    assert group.expire(2 + 500) == [a.member_id]  # within its session, but it did not revoke in time


def test_static_member_back_within_its_session_keeps_its_partitions():
    group, counts = new_group(), {"t": 6}
    a, b = Client(group, instance_id="host-a"), Client(group, instance_id="host-b")
    converge([a, b], 0, counts)
    epoch, owned = group.group_epoch, a.owned
    a.leave(1, counts, epoch=-2)
    again = Client(group, instance_id="host-a")
    answer = again.heartbeat(2, counts)
    assert answer.assignment == owned and group.group_epoch == epoch


def static_client(group, member_id, instance_id="host-a"):
    client = Client(group, instance_id=instance_id)
    client.member_id = member_id  # client-chosen member ids (KIP-1082), as the consumer sends them
    return client


def test_a_second_live_process_with_the_same_instance_id_is_refused_and_moves_nothing():
    group, counts = new_group(), {"t": 6}
    a, b = static_client(group, "a"), Client(group)
    converge([a, b], 0, counts)
    epoch, owned = group.group_epoch, {m.member_id: m.assigned for m in group.members.values()}
    twin = static_client(group, "twin")
    with pytest.raises(RaftlogError) as refused:
        twin.heartbeat(1, counts)
    assert refused.value.error is Errors.UNRELEASED_INSTANCE_ID
    assert "held by member 'a'" in refused.value.message
    assert group.group_epoch == epoch and {m.member_id: m.assigned for m in group.members.values()} == owned
    a.heartbeat(2, counts)  # the holder goes on as before
    assert a.owned == owned["a"] and group.state is GroupState.STABLE


def test_the_same_member_joining_again_is_not_an_unreleased_instance_id():
    group, counts = new_group(), {"t": 4}
    a = static_client(group, "a")
    a.heartbeat(0, counts)
    a.epoch = 0  # the answer was lost, or a was fenced: it joins again with its own member id
    converge([a], 1, counts)
    assert list(group.members) == ["a"] and len(a.owned) == 4


def test_an_instance_id_is_free_again_once_its_holders_session_runs_out():
    group, counts = new_group(), {"t": 4}
    a = static_client(group, "a")
    a.heartbeat(0, counts)  # then a is killed -9: no leave
    with pytest.raises(RaftlogError) as refused:
        static_client(group, "a2").heartbeat(SESSION_MS - 1, counts)
    assert refused.value.error is Errors.UNRELEASED_INSTANCE_ID
    assert group.expire(SESSION_MS) == ["a"]
    again = static_client(group, "a2")
    converge([again], SESSION_MS + 1, counts)
    assert len(again.owned) == 4


def test_the_replaced_incarnation_is_fenced_by_instance_id():
    group, counts = new_group(), {"t": 6}
    a, b = static_client(group, "a"), Client(group)
    converge([a, b], 0, counts)
    old = (a.member_id, a.epoch, a.owned)
    a.leave(1, counts, epoch=-2)
    successor = static_client(group, "a-restarted")
    assert successor.heartbeat(2, counts).assignment == old[2]
    # The old incarnation was not dead after all (paused, cut off): it heartbeats, then leaves.
    for epoch in (old[1], -2, -1):
        with pytest.raises(RaftlogError) as fenced:
            group.heartbeat(Heartbeat(old[0], epoch, instance_id="host-a", owned=old[2]), 3, counts)
        assert fenced.value.error is Errors.FENCED_INSTANCE_ID
    assert group.static_member("host-a").member_id == "a-restarted"
    assert successor.heartbeat(4, counts).assignment == old[2]


def test_commit_fencing():
    group, counts = new_group(), {"t": 2}
    group.validate_commit("", -1)  # empty group: a manual assign() consumer may commit
    a = Client(group)
    a.heartbeat(0, counts)
    group.validate_commit(a.member_id, a.epoch)
    with pytest.raises(RaftlogError) as stale:
        group.validate_commit(a.member_id, a.epoch - 1)
    assert stale.value.error is Errors.STALE_MEMBER_EPOCH
    with pytest.raises(RaftlogError) as unknown:
        group.validate_commit("nobody", 1)
    assert unknown.value.error is Errors.UNKNOWN_MEMBER_ID
    with pytest.raises(RaftlogError) as outsider:
        group.validate_commit("", -1)
    assert outsider.value.error is Errors.UNKNOWN_MEMBER_ID


def test_bad_regex_and_unknown_member_and_fenced_epoch():
    group, counts = new_group(), {"t": 2}
    with pytest.raises(RaftlogError) as bad:
        group.heartbeat(Heartbeat("", 0, subscribed_regex="t(("), 0, counts)
    assert bad.value.error is Errors.INVALID_REGULAR_EXPRESSION and not group.members
    with pytest.raises(RaftlogError) as unknown:
        group.heartbeat(Heartbeat("ghost", 3), 0, counts)
    assert unknown.value.error is Errors.UNKNOWN_MEMBER_ID
    a = Client(group)
    a.heartbeat(0, counts)
    with pytest.raises(RaftlogError) as fenced:
        group.heartbeat(Heartbeat(a.member_id, a.epoch + 5), 1, counts)
    assert fenced.value.error is Errors.FENCED_MEMBER_EPOCH


def test_regex_subscription_follows_new_topics():
    group = new_group()
    a = Client(group, topics=None)
    a.group.heartbeat(Heartbeat("", 0, subscribed_regex="orders-.*"), 0, {"orders-1": 2, "other": 3})
    member = next(iter(group.members.values()))
    answer = group.heartbeat(
        Heartbeat(member.member_id, member.member_epoch, owned=frozenset()),
        1,
        {"orders-1": 2, "orders-2": 1, "other": 3, "__consumer_offsets": 12},
    )
    assert answer.assignment == {("orders-1", 0), ("orders-1", 1), ("orders-2", 0)}


def test_regex_subscription_matches_only_topics_the_principal_may_describe():
    group = new_group()
    allowed = {"orders-1"}
    counts = {"orders-1": 2, "orders-secret": 1, "other": 3}
    group.heartbeat(Heartbeat("", 0, subscribed_regex="orders-.*", describable=lambda t: t in allowed), 0, counts)
    member = next(iter(group.members.values()))
    answer = group.heartbeat(
        Heartbeat(member.member_id, member.member_epoch, owned=frozenset(), describable=lambda t: t in allowed),
        1,
        counts,
    )
    assert answer.assignment == {("orders-1", 0), ("orders-1", 1)}
    # An ACL granted later counts from the next heartbeat (the predicate asks the current ACLs).
    allowed.add("orders-secret")
    for now in (2, 3):
        answer = group.heartbeat(
            Heartbeat(
                member.member_id, member.member_epoch, owned=answer.assignment, describable=lambda t: t in allowed
            ),
            now,
            counts,
        )
    assert ("orders-secret", 0) in answer.assignment


def test_a_restored_regex_member_keeps_only_what_it_had_until_it_heartbeats():
    group = new_group()
    counts = {"orders-1": 1, "orders-2": 1, "other": 1}
    group.heartbeat(Heartbeat("", 0, subscribed_regex="orders-.*", describable=lambda t: t == "orders-1"), 0, counts)
    member = next(iter(group.members.values()))
    member.restored, member.describable = True, None  # as the coordinator restores it from its record
    group.target_partition_counts = {}
    b = Client(group, topics=("other",))
    b.heartbeat(1, counts)
    # Another member's heartbeat recomputes the target: the restored member is given nothing it did
    # not have (orders-2, which its principal may not Describe, stays unassigned).
    assert group.target[member.member_id] == {("orders-1", 0)}
    assert group.target[b.member_id] == {("other", 0)}


ops = st.lists(
    st.tuples(st.sampled_from(["join", "hb", "hb", "hb", "leave", "kill", "grow"]), st.integers(0, 20)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(script=ops)
def test_never_two_owners_and_converges_balanced(script):
    group, counts, now = new_group(), {"t": 6, "u": 3}, 0
    clients: list[Client] = []
    for op, pick in script:
        now += 10
        alive = [c for c in clients if c.alive]
        if op == "join" or not alive:
            c = Client(group, topics=("t", "u"))
            clients.append(c)
            c.heartbeat(now, counts)
        elif op == "hb":
            alive[pick % len(alive)].heartbeat(now, counts)
        elif op == "leave":
            alive[pick % len(alive)].leave(now, counts)
        elif op == "kill":
            victim = alive[pick % len(alive)]
            victim.alive = False
            group.members[victim.member_id].session_deadline_ms = now
            group.expire(now)
        elif op == "grow" and counts["t"] < 30:
            counts["t"] += 1
        check_disjoint(clients)
        group.check_invariants()
    converge(clients, now + 1, counts, rounds=4)
    check_disjoint(clients)
    alive = [c for c in clients if c.alive]
    if not alive:
        assert group.state is GroupState.EMPTY
        return
    assert group.state is GroupState.STABLE
    owned = [len(c.owned) for c in alive]
    assert sum(owned) == sum(counts.values()) and max(owned) - min(owned) <= 1


def test_offsets_expire_only_for_a_group_empty_past_the_retention_with_no_recent_commit():
    minute = 60_000
    # empty for exactly the retention, last commit older: expired
    assert offsets_expired(False, empty_since_ms=0, newest_commit_ms=0, now_ms=minute, retention_ms=minute)
    # a group with members keeps its offsets however old they are
    assert not offsets_expired(True, empty_since_ms=0, newest_commit_ms=0, now_ms=100 * minute, retention_ms=minute)
    # empty, but not for long enough yet
    assert not offsets_expired(False, empty_since_ms=1, newest_commit_ms=0, now_ms=minute, retention_ms=minute)
    # empty for long, but an offset was committed (an admin's reset-offsets) within the retention
    assert not offsets_expired(False, empty_since_ms=0, newest_commit_ms=30_000, now_ms=minute, retention_ms=minute)
