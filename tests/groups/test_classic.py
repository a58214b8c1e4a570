"""The classic group protocol's state machine (JoinGroup/SyncGroup/Heartbeat/LeaveGroup), driven
without I/O: requests and the clock in, held requests answered through take_answers()."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog.errors import RaftlogError
from raftlog.groups import records as rec
from raftlog.groups.classic import ClassicGroup, ClassicSettings, ClassicState, Held, JoinRequest

SESSION_MS = 10_000
REBALANCE_MS = 30_000
DELAY_MS = 3_000
STABLE_AT = DELAY_MS + 100  # stable_pair's group is Stable from then on


def new_group(delay_ms: int = DELAY_MS) -> ClassicGroup:
    return ClassicGroup("g", ClassicSettings(delay_ms, 6_000, 1_800_000))


def join_request(member_id="", instance_id=None, protocols=(("range", b"m"),), protocol_type="consumer", **kw):
    values = dict(
        member_id=member_id,
        instance_id=instance_id,
        client_id="c",
        client_host="h",
        session_timeout_ms=SESSION_MS,
        rebalance_timeout_ms=REBALANCE_MS,
        protocol_type=protocol_type,
        protocols=tuple(protocols),
        require_known_member_id=True,
    )
    values.update(kw)
    return JoinRequest(**values)


def first_join(group, now, metadata=b"m", instance_id=None):
    """A v4+ client's first JoinGroup: MEMBER_ID_REQUIRED, then the join with that id (held)."""
    if instance_id is not None:
        assert isinstance(
            group.join(join_request(instance_id=instance_id, protocols=(("range", metadata),)), now), Held
        )
        return next(m.member_id for m in group.members.values() if m.instance_id == instance_id)
    answer = group.join(join_request(protocols=(("range", metadata),)), now)
    assert answer is not None and answer.error == "MEMBER_ID_REQUIRED" and answer.member_id
    assert isinstance(group.join(join_request(answer.member_id, protocols=(("range", metadata),)), now), Held)
    return answer.member_id


def stable_pair():
    """Two members, generation 1, leader a; b's assignment b"B", a's b"A"."""
    group = new_group()
    a = first_join(group, 0, b"ma")
    b = first_join(group, 100, b"mb")
    group.tick(STABLE_AT)
    joins, _ = group.take_answers()
    answers = dict(joins)
    assert group.sync(b, None, 1, "consumer", "range", {}, STABLE_AT) is None
    assert group.sync(answers[a].leader_id, None, 1, None, None, {a: b"A", b: b"B"}, STABLE_AT) is None
    assert group.state is ClassicState.STABLE
    group.take_answers()
    return group, a, b


def keep_alive(group, member_id, instance_id, start, end):
    """member_id heartbeats every 5 s (told REBALANCE_IN_PROGRESS) while the clock runs to end."""
    for t in range(start, end, 5_000):
        with pytest.raises(RaftlogError, match="REBALANCE_IN_PROGRESS"):
            group.heartbeat(member_id, instance_id, group.generation, t)
        group.tick(t)
    group.tick(end)


def error_of(call) -> str:
    with pytest.raises(RaftlogError) as raised:
        call()
    return raised.value.reason


def test_join_and_sync_barriers_hand_the_leaders_assignment_to_every_member():
    group = new_group()
    a = first_join(group, 0, b"ma")
    assert group.state is ClassicState.PREPARING_REBALANCE
    group.tick(1_000)  # the initial delay holds the first rebalance for more members
    assert group.take_answers() == ([], [])
    b = first_join(group, 1_500, b"mb")
    group.tick(4_499)
    assert group.take_answers() == ([], [])
    group.tick(4_500)  # each newcomer gives others the delay again
    joins, _ = group.take_answers()
    answers = dict(joins)
    assert set(answers) == {a, b} and {x.generation for x in answers.values()} == {1}
    assert group.state is ClassicState.COMPLETING_REBALANCE and group.protocol_name == "range"
    leader = answers[a].leader_id
    assert leader == a == answers[b].leader_id
    assert sorted(answers[a].members) == sorted([(a, None, b"ma"), (b, None, b"mb")])
    assert answers[b].members == ()  # only the leader gets the metadata

    assert group.sync(b, None, 1, "consumer", "range", {}, 4_600) is None  # held for the leader
    assert group.stored is None or group.stored.generation == 0
    assert group.sync(a, None, 1, "consumer", "range", {a: b"A", b: b"B"}, 4_700) is None
    _, syncs = group.take_answers()
    assert {member: s.assignment for member, s in syncs} == {a: b"A", b: b"B"}
    assert group.state is ClassicState.STABLE
    assert group.stored is not None and group.stored.generation == 1 and group.stored.leader == a
    assert {m.member_id: m.assignment for m in group.stored.members} == {a: b"A", b: b"B"}
    # Stable: a SyncGroup is answered at once; a heartbeat is fine.
    again = group.sync(b, None, 1, None, None, {}, 5_000)
    assert again is not None and again.assignment == b"B"
    group.heartbeat(b, None, 1, 5_000)


def test_a_new_member_rebalances_the_group_and_others_are_told_to_rejoin():
    group, a, b = stable_pair()
    now = STABLE_AT
    answer = group.join(join_request(), now)
    assert answer is not None and answer.error == "MEMBER_ID_REQUIRED"
    c = answer.member_id
    assert group.state is ClassicState.STABLE  # a member id handed out moves nothing yet
    assert isinstance(group.join(join_request(c), now), Held)
    assert group.state is ClassicState.PREPARING_REBALANCE
    assert error_of(lambda: group.heartbeat(a, None, 1, now)) == "REBALANCE_IN_PROGRESS"
    assert error_of(lambda: group.sync(a, None, 1, None, None, {}, now)) == "REBALANCE_IN_PROGRESS"
    assert isinstance(group.join(join_request(a, protocols=(("range", b"ma"),)), now), Held)
    assert group.take_answers() == ([], [])  # b has not rejoined yet
    assert isinstance(group.join(join_request(b, protocols=(("range", b"mb"),)), now), Held)
    joins, _ = group.take_answers()
    assert {m for m, _ in joins} == {a, b, c} and {x.generation for _, x in joins} == {2}
    assert dict(joins)[a].leader_id == a  # the leader stays the leader
    assert error_of(lambda: group.heartbeat(a, None, 1, now)) == "ILLEGAL_GENERATION"
    assert error_of(lambda: group.sync(a, None, 1, None, None, {}, now)) == "ILLEGAL_GENERATION"
    assert error_of(lambda: group.heartbeat("nobody", None, 2, now)) == "UNKNOWN_MEMBER_ID"


def test_a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed():
    group, a, b = stable_pair()
    now = STABLE_AT
    assert isinstance(group.join(join_request(a, protocols=(("range", b"changed"),)), now), Held)
    keep_alive(group, b, None, now, now + REBALANCE_MS - 1)  # b heartbeats but never rejoins
    assert group.take_answers()[0] == []
    group.tick(now + REBALANCE_MS)
    joins, _ = group.take_answers()
    assert [m for m, _ in joins] == [a] and joins[0][1].error == ""
    assert set(group.members) == {a} and group.generation == 2


def test_session_timeouts_remove_members_and_an_emptied_group_is_stored_empty():
    group, a, b = stable_pair()
    now = STABLE_AT
    group.heartbeat(a, None, 1, now + 8_000)
    assert group.tick(now + SESSION_MS) == [b]  # b never heartbeat
    assert group.state is ClassicState.PREPARING_REBALANCE
    assert isinstance(group.join(join_request(a, protocols=(("range", b"ma"),)), now + SESSION_MS), Held)
    joins, _ = group.take_answers()
    assert [m for m, _ in joins] == [a] and dict(joins)[a].members == ((a, None, b"ma"),)
    group.leave([(a, None)], now + SESSION_MS + 1)
    assert group.state is ClassicState.EMPTY and group.members == {}
    assert group.stored is not None and group.stored.members == () and group.stored.generation == 3


def test_member_id_required_ids_expire_and_old_versions_join_at_once():
    group = new_group(delay_ms=0)
    answer = group.join(join_request(), 0)
    assert answer is not None and answer.error == "MEMBER_ID_REQUIRED"
    group.tick(SESSION_MS)
    assert error_of(lambda: group.join(join_request(answer.member_id), SESSION_MS)) == "UNKNOWN_MEMBER_ID"
    # JoinGroup v0-v3: no MEMBER_ID_REQUIRED round; with no delay the barrier completes at once.
    assert isinstance(group.join(join_request(require_known_member_id=False), SESSION_MS), Held)
    joins, _ = group.take_answers()
    assert len(joins) == 1 and joins[0][1].generation == 1 and joins[0][1].leader_id == joins[0][0]


def test_protocols_must_match_the_group():
    group, a, b = stable_pair()
    assert error_of(lambda: group.join(join_request(protocol_type="connect"), 0)) == "INCONSISTENT_GROUP_PROTOCOL"
    assert (
        error_of(lambda: group.join(join_request(protocols=(("roundrobin", b""),)), 0)) == "INCONSISTENT_GROUP_PROTOCOL"
    )
    assert error_of(lambda: group.join(join_request(protocols=()), 0)) == "INCONSISTENT_GROUP_PROTOCOL"
    assert error_of(lambda: group.join(join_request(session_timeout_ms=100), 0)) == "INVALID_SESSION_TIMEOUT"
    assert error_of(lambda: group.sync(a, None, 1, "consumer", "roundrobin", {}, 0)) == "INCONSISTENT_GROUP_PROTOCOL"


def test_the_protocol_is_chosen_by_vote_among_those_all_members_support():
    group = new_group(delay_ms=0)
    group.join(join_request(protocols=(("cooperative-sticky", b""), ("range", b"")), require_known_member_id=False), 0)
    group.take_answers()
    assert group.protocol_name == "cooperative-sticky"
    [a] = group.members
    group.join(join_request(protocols=(("range", b""), ("roundrobin", b"")), require_known_member_id=False), 1)
    group.join(join_request(a, protocols=(("cooperative-sticky", b""), ("range", b""))), 1)
    assert group.protocol_name == "range"  # the only one both support


def test_a_static_member_back_with_a_new_incarnation_keeps_its_assignment_without_a_rebalance():
    group = new_group(delay_ms=0)
    a = first_join(group, 0, instance_id="i-a")
    group.take_answers()
    assert group.sync(a, "i-a", 1, None, None, {a: b"A"}, 0) is None
    assert group.state is ClassicState.STABLE
    answer = group.join(join_request(instance_id="i-a", protocols=(("range", b"m"),)), 100)
    assert answer is not None and answer.error == "" and answer.generation == 1
    assert answer.member_id != a and answer.leader_id == answer.member_id and answer.skip_assignment
    assert group.state is ClassicState.STABLE
    assert group.stored is not None and [m.member_id for m in group.stored.members] == [answer.member_id]
    synced = group.sync(answer.member_id, "i-a", 1, None, None, {}, 100)
    assert synced is not None and synced.assignment == b"A"
    # The replaced incarnation is fenced everywhere.
    assert error_of(lambda: group.heartbeat(a, "i-a", 1, 100)) == "FENCED_INSTANCE_ID"
    assert error_of(lambda: group.validate_commit(a, "i-a", 1, 100)) == "FENCED_INSTANCE_ID"
    # A static member that does not rejoin in a rebalance is kept, a dynamic one removed.
    b = first_join(group, 200)
    keep_alive(group, answer.member_id, "i-a", 200, 200 + REBALANCE_MS)
    assert set(group.members) == {answer.member_id, b}
    joins, _ = group.take_answers()
    assert dict(joins)[b].leader_id == b  # the leader that rejoined leads
    # An admin removes a static member by its instance id alone (LeaveGroup v3+, member id "").
    [answer_leave] = group.leave([("", "i-a")], 200 + REBALANCE_MS)
    assert answer_leave.error == "" and set(group.members) == {b}
    assert group.leave([("", "i-a")], 200 + REBALANCE_MS)[0].error == "UNKNOWN_MEMBER_ID"


def test_offset_commits_are_fenced_by_generation():
    group, a, b = stable_pair()
    group.validate_commit(a, None, 1, 0)
    assert error_of(lambda: group.validate_commit(a, None, 0, 0)) == "ILLEGAL_GENERATION"
    assert error_of(lambda: group.validate_commit("x", None, 1, 0)) == "UNKNOWN_MEMBER_ID"
    assert error_of(lambda: group.validate_commit("", None, -1, 0)) == "UNKNOWN_MEMBER_ID"  # not empty
    group.join(join_request(a, protocols=(("range", b"other"),)), 0)
    group.validate_commit(b, None, 1, 0)  # PreparingRebalance: a commit before rejoining is fine
    group.join(join_request(b, protocols=(("range", b"mb"),)), 0)
    group.take_answers()
    assert error_of(lambda: group.validate_commit(b, None, 2, 0)) == "REBALANCE_IN_PROGRESS"
    group.leave([(a, None), (b, None)], 0)
    group.validate_commit("", None, -1, 0)  # an empty group takes commits from outside


def test_the_sync_barrier_removes_members_that_do_not_sync_and_rebalances():
    group = new_group()
    a = first_join(group, 0)
    b = first_join(group, 0)
    group.tick(DELAY_MS)
    assert len(group.take_answers()[0]) == 2 and group.state is ClassicState.COMPLETING_REBALANCE
    leader = group.leader_id
    other = b if leader == a else a
    assert group.sync(other, None, group.generation, None, None, {}, DELAY_MS) is None
    group.tick(DELAY_MS + REBALANCE_MS)
    _, syncs = group.take_answers()
    assert syncs and all(s.error == "REBALANCE_IN_PROGRESS" for _, s in syncs)
    assert set(group.members) == {other} and group.state is ClassicState.PREPARING_REBALANCE


def test_a_stable_state_that_could_not_be_written_rebalances_the_group():
    group = new_group()
    a = first_join(group, 0)
    b = first_join(group, 0)
    group.tick(DELAY_MS)
    group.take_answers()
    leader, other = group.leader_id, b if group.leader_id == a else a
    assert group.sync(other, None, 1, None, None, {}, DELAY_MS) is None
    assert group.sync(leader, None, 1, None, None, {a: b"A", b: b"B"}, DELAY_MS) is None
    assert group.state is ClassicState.STABLE and group.stored is not None
    # The coordinator's write failed: it answers the held SyncGroups with the write's error.
    group.write_failed(DELAY_MS, "NOT_ENOUGH_REPLICAS")
    assert group.state is ClassicState.PREPARING_REBALANCE
    assert error_of(lambda: group.heartbeat(other, None, 1, DELAY_MS)) == "REBALANCE_IN_PROGRESS"
    assert isinstance(group.join(join_request(a), DELAY_MS), Held)
    assert isinstance(group.join(join_request(b), DELAY_MS), Held)
    joins, _ = group.take_answers()
    assert {m for m, _ in joins} == {a, b} and {x.generation for _, x in joins} == {2}


def test_leave_answers_per_member_and_the_leader_leaving_rebalances():
    group, a, b = stable_pair()
    answers = group.leave([(a, None), ("nobody", None), (b, "not-b")], 0)
    assert [x.error for x in answers] == ["", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID"]
    assert group.state is ClassicState.PREPARING_REBALANCE
    assert isinstance(group.join(join_request(b, protocols=(("range", b"mb"),)), 0), Held)
    joins, _ = group.take_answers()
    assert dict(joins)[b].leader_id == b and dict(joins)[b].generation == 2


def test_restored_from_its_record_a_group_is_stable_with_its_assignments():
    group, a, b = stable_pair()
    assert group.stored is not None
    value = rec.decode_any_group_value(rec.encode_classic_group_value(group.stored))
    assert value == group.stored
    restored = ClassicGroup.restore("g", group.settings, value, 50_000)
    assert restored.state is ClassicState.STABLE and restored.generation == 1 and restored.leader_id == a
    synced = restored.sync(b, None, 1, None, None, {}, 50_000)
    assert synced is not None and synced.assignment == b"B"
    restored.heartbeat(a, None, 1, 50_000)
    # An emptied group restores Empty, generation kept.
    group.leave([(a, None), (b, None)], 0)
    assert group.stored is not None
    empty = ClassicGroup.restore("g", group.settings, group.stored, 0)
    assert empty.state is ClassicState.EMPTY and empty.generation == 2


def test_a_classic_record_is_told_apart_from_a_consumer_group_record():
    consumer = rec.GroupValue(3, "uniform", 7, ())
    assert rec.decode_any_group_value(rec.encode_group_value(consumer)) == consumer
    classic = rec.ClassicGroupValue("consumer", 3, "range", "m1", 7, ())
    assert rec.decode_any_group_value(rec.encode_classic_group_value(classic)) == classic
    assert "classic" in rec.describe_record(
        rec.encode_group_key(rec.GroupKey("g")), rec.encode_classic_group_value(classic)
    )


# -- every sequence of requests keeps the invariants ------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["join", "rejoin", "sync", "leader_sync", "heartbeat", "leave", "tick", "static"]),
        st.integers(0, 3),  # which client
        st.integers(0, 40_000),  # time advance
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_any_sequence_of_requests_keeps_the_invariants_and_answers_each_held_request_once(ops):
    group = new_group(delay_ms=1_000)
    now = 0
    ids: dict[int, str] = {}
    held_joins: set[str] = set()
    held_syncs: set[str] = set()
    for op, client, advance in ops:
        now += advance % 5_000
        member = ids.get(client, "")
        try:
            if op == "join":
                answer = group.join(join_request(member), now)
                ids[client] = answer.member_id
                if isinstance(answer, Held):
                    held_joins.add(answer.member_id)
            elif op == "static":
                answer = group.join(join_request(instance_id=f"i{client}"), now)
                ids[client] = answer.member_id
            elif op == "rejoin" and member:
                if isinstance(
                    group.join(join_request(member, protocols=(("range", bytes([advance % 3])),)), now), Held
                ):
                    held_joins.add(member)
            elif op in ("sync", "leader_sync") and member:
                assignments = {m: b"x" for m in group.members} if op == "leader_sync" else {}
                if group.sync(member, None, group.generation, None, None, assignments, now) is None:
                    held_syncs.add(member)
            elif op == "heartbeat" and member:
                group.heartbeat(member, None, group.generation, now)
            elif op == "leave" and member:
                group.leave([(member, None)], now)
            elif op == "tick":
                group.tick(now)
        except RaftlogError:
            pass
        joins, syncs = group.take_answers()
        for m, _ in joins:
            held_joins.discard(m)
        for m, _ in syncs:
            assert m in held_syncs, f"a SyncGroup answered that was not held: {m}"
            held_syncs.discard(m)
        group.check_invariants()
        # A held SyncGroup exists only while the sync barrier is up.
        if group.state is not ClassicState.COMPLETING_REBALANCE:
            assert not any(m.awaiting_sync for m in group.members.values())
        if group.state is not ClassicState.PREPARING_REBALANCE:
            assert not any(m.awaiting_join for m in group.members.values())
