"""Steps of the pure Raft core, driven by hand through a tiny synchronous network."""

from __future__ import annotations

import random

import pytest

from raftlog.node_ids import NO_NODE
from raftlog.raft.core import RaftNode, RaftSettings, Role
from raftlog.raft.messages import (
    Entry,
    HardState,
    Message,
    MsgType,
    NotLeaderError,
    PersistedState,
)

ELECTION_TICKS = 10


def make_node(node_id: int, voters=(1, 2, 3), persisted: PersistedState | None = None, **overrides) -> RaftNode:
    settings = RaftSettings(election_ticks=ELECTION_TICKS, heartbeat_ticks=1, **overrides)
    return RaftNode(node_id, list(voters), persisted or PersistedState(), settings, random.Random(node_id))


class Net:
    """Delivers every message at once; `cut` drops messages between the named nodes."""

    def __init__(self, *nodes: RaftNode):
        self.nodes = {n.id: n for n in nodes}
        self.cut: set[frozenset] = set()
        self.sent: list[Message] = []

    def flush(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for node in self.nodes.values():
                ready = node.ready()
                if ready is None:
                    continue
                node.advance(ready)
                for msg in ready.messages:
                    self.sent.append(msg)
                    if msg.to in self.nodes and frozenset((msg.frm, msg.to)) not in self.cut:
                        self.nodes[msg.to].step(msg)
                        moved = True
            if not moved and not any(node.has_ready() for node in self.nodes.values()):
                return  # quiet: nothing sent, and nothing held back (a commit index waits one Ready)

    def tick(self, node_id: int, times: int) -> None:
        for _ in range(times):
            self.nodes[node_id].tick()
            self.flush()

    def elect(self, node_id: int) -> RaftNode:
        self.tick(node_id, 2 * ELECTION_TICKS)
        assert self.nodes[node_id].role == Role.LEADER
        return self.nodes[node_id]

    def isolate(self, node_id: int) -> None:
        self.cut |= {frozenset((node_id, other)) for other in self.nodes if other != node_id}

    def heal(self) -> None:
        self.cut.clear()


def test_a_node_elects_itself_and_replicates_proposals():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    assert all(n.leader_id == 1 and n.term == leader.term for n in net.nodes.values())
    index = leader.propose(b"x")
    net.flush()
    assert all(n.log.committed >= index for n in net.nodes.values())


def _commit_first_proposal(net: Net, leader: RaftNode):
    """Proposes x, replicates it and hands the followers' answers to the leader; returns (x's
    index, the leader's next Ready, which applies x)."""
    index = leader.propose(b"x")
    ready = leader.ready()
    leader.advance(ready)
    for msg in ready.messages:
        net.nodes[msg.to].step(msg)
    for follower in (2, 3):
        answer = net.nodes[follower].ready()
        net.nodes[follower].advance(answer)
        for msg in answer.messages:
            leader.step(msg)
    ready = leader.ready()
    assert leader.log.committed == index and ready.committed_entries[-1].index == index
    return index, ready


def test_a_new_commit_index_rides_the_append_of_what_applying_set_off():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    first, ready = _commit_first_proposal(net, leader)
    assert not [m for m in ready.messages if m.type == MsgType.APPEND], "the commit index waits one Ready"
    leader.advance(ready)
    second = leader.propose(b"y")  # what the application does on applying x
    appends = [m for m in leader.ready().messages if m.type == MsgType.APPEND]
    assert sorted(m.to for m in appends) == [2, 3], "one append per follower"
    assert all(m.commit == first and [e.index for e in m.entries] == [second] for m in appends)


def test_a_held_commit_index_goes_out_with_the_next_ready_when_nothing_follows():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    first, ready = _commit_first_proposal(net, leader)
    leader.advance(ready)
    assert leader.has_ready(), "the held broadcast is work still to do"
    ready = leader.ready()
    appends = [m for m in ready.messages if m.type == MsgType.APPEND]
    assert sorted(m.to for m in appends) == [2, 3] and all(m.commit == first and not m.entries for m in appends)
    leader.advance(ready)
    for msg in appends:
        net.nodes[msg.to].step(msg)
    net.flush()
    assert all(n.log.committed == first for n in net.nodes.values())


def test_a_candidate_with_id_0_does_not_grant_a_second_vote_in_its_term():
    """Ids start at 0 (as Kafka operators number nodes): candidate 0's vote for itself must not
    read as "not voted", or it would vote for another candidate of the same term too."""
    candidate = make_node(0, voters=(0, 1, 2), pre_vote=False)
    for _ in range(2 * ELECTION_TICKS):
        candidate.tick()
    assert candidate.role == Role.CANDIDATE and candidate.vote == 0
    candidate.advance(candidate.ready())
    candidate.step(Message(MsgType.VOTE, 0, 1, term=candidate.term, log_term=0, index=0))
    answers = [m for m in candidate.ready().messages if m.type == MsgType.VOTE_RESP]
    assert len(answers) == 1 and answers[0].reject, "node 0 already voted for itself in this term"
    assert candidate.vote == 0


def test_node_0_leads_and_is_named_as_the_leader():
    net = Net(make_node(0, voters=(0, 1, 2)), make_node(1, voters=(0, 1, 2)), make_node(2, voters=(0, 1, 2)))
    leader = net.elect(0)
    assert leader.hard_state.vote == 0 and all(n.leader_id == 0 for n in net.nodes.values())
    with pytest.raises(NotLeaderError) as info:
        net.nodes[2].propose(b"x")
    assert info.value.leader_id == 0


def test_a_proposal_on_a_follower_names_the_leader():
    net = Net(make_node(1), make_node(2), make_node(3))
    net.elect(1)
    with pytest.raises(NotLeaderError) as info:
        net.nodes[2].propose(b"x")
    assert info.value.leader_id == 1


def test_pre_vote_is_refused_while_the_leader_is_alive_and_the_term_does_not_grow():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    term = leader.term
    net.cut = {frozenset((1, 3))}  # node 3 stops hearing the leader, the others still do
    for _ in range(3 * ELECTION_TICKS):
        for node in net.nodes.values():
            node.tick()
        net.flush()
    assert leader.role == Role.LEADER and leader.term == term
    assert net.nodes[3].term == term  # pre-votes never raised its term
    assert any(m.type == MsgType.PRE_VOTE for m in net.sent)
    assert not any(m.type == MsgType.VOTE and m.term > term for m in net.sent)


def test_check_quorum_steps_down_a_leader_cut_off_from_the_majority():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    net.isolate(1)
    for _ in range(2 * ELECTION_TICKS + 1):
        leader.tick()
        net.flush()
    assert leader.role == Role.FOLLOWER


def test_figure_8_an_old_term_entry_is_not_committed_by_counting_replicas():
    # S1 led term 2 and wrote entry 2 that reached nobody; now S1 wins a later term. Sending
    # one entry per message, S2 first acknowledges entry 2 alone: a majority (S1, S2) holds it,
    # but it is from an old term, so it must stay uncommitted until the new term's entry is
    # on a majority too (Figure 8 of the Raft paper).
    s1 = make_node(
        1,
        persisted=PersistedState(HardState(3, 0, 1), entries=[Entry(1, 1, b"a"), Entry(2, 2, b"old")]),
        max_entries_per_message=1,
    )
    s2 = make_node(2, persisted=PersistedState(HardState(3, 0, 1), entries=[Entry(1, 1, b"a")]))
    s3 = make_node(3, persisted=PersistedState(HardState(3, 0, 1), entries=[Entry(1, 1, b"a")]))
    nodes = {1: s1, 2: s2, 3: s3}
    for _ in range(2 * ELECTION_TICKS):
        s1.tick()
        if s1.role == Role.PRE_CANDIDATE or s1.role == Role.CANDIDATE:
            break
    queue = []
    s2_had_new_entry_when_committed = []
    for _ in range(200):
        for node in nodes.values():
            ready = node.ready()
            if ready:
                node.advance(ready)
                queue += [m for m in ready.messages if m.to != 3 or m.type != MsgType.APPEND]
        if not queue:
            break
        msg = queue.pop(0)
        nodes[msg.to].step(msg)
        if s1.role == Role.LEADER and s1.log.committed >= 2:
            s2_had_new_entry_when_committed.append(s2.log.term_at(3) == s1.term)
    assert s1.role == Role.LEADER and s1.term == 4
    assert s1.log.committed >= 3, "the new term's entry commits once on a majority"
    assert s2_had_new_entry_when_committed and all(s2_had_new_entry_when_committed)


def test_a_follower_truncates_a_conflicting_suffix():
    persisted = PersistedState(
        HardState(term=2, vote=NO_NODE, commit=1),
        entries=[Entry(1, 1, b"a"), Entry(2, 2, b"stale"), Entry(2, 3, b"stale")],
    )
    follower = make_node(2, persisted=persisted)
    follower.step(Message(MsgType.APPEND, 2, 1, term=3, log_term=1, index=1, entries=(Entry(3, 2, b"new"),), commit=2))
    ready = follower.ready()
    assert ready.truncate_from == 2 and [e.data for e in ready.entries] == [b"new"]
    follower.advance(ready)
    assert follower.log.last_index == 2 and follower.log.committed == 2


def test_a_lagging_follower_is_caught_up_by_snapshot():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    net.isolate(3)
    for i in range(20):
        leader.propose(b"v%d" % i)
        net.flush()
    leader.compact(leader.log.applied, b"state-at-applied")
    assert leader.log.snapshot_index > 3
    net.heal()
    net.tick(1, 3)
    follower = net.nodes[3]
    assert follower.log.snapshot_index == leader.log.snapshot_index
    assert any(m.type == MsgType.SNAPSHOT for m in net.sent)
    assert follower.log.committed == leader.log.committed


def test_leadership_transfer_hands_over_with_timeout_now():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    leader.transfer_leadership(2)
    net.flush()
    assert net.nodes[2].role == Role.LEADER and leader.role == Role.FOLLOWER
    with pytest.raises(NotLeaderError):
        leader.propose(b"x")


def test_read_index_confirms_leadership_with_a_heartbeat_round():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    net.isolate(1)
    leader.read_index(7)
    net.flush()
    assert not any(r.request_id == 7 for r in leader._read_states)
    net.heal()
    leader.read_index(8)
    ready = leader.ready()
    leader.advance(ready)
    states = []
    for msg in ready.messages:
        peer = net.nodes[msg.to]
        peer.step(msg)
        reply_ready = peer.ready()
        peer.advance(reply_ready)
        for reply in reply_ready.messages:
            leader.step(reply)
        ready2 = leader.ready()
        if ready2:
            leader.advance(ready2)
            states += ready2.read_states
    assert [s.request_id for s in states][:1] in ([7], [8])
    assert all(s.index == leader.log.committed for s in states)


def test_appends_are_sized_to_fit_one_transport_message():
    limits = dict(max_bytes_per_message=4096, max_entry_bytes=2048)
    net = Net(*(make_node(i, **limits) for i in (1, 2, 3)))
    leader = net.elect(1)
    net.isolate(3)
    for n in range(10):
        leader.propose(b"%d" % n + b"x" * 1500)
        net.flush()
    net.heal()
    net.sent.clear()
    net.tick(1, 3)
    appends = [m for m in net.sent if m.type == MsgType.APPEND and m.to == 3 and m.entries]
    assert appends and all(sum(len(e.data) + 32 for e in m.entries) <= 4096 for m in appends)
    assert max(len(m.entries) for m in appends) == 2
    assert net.nodes[3].log.committed == leader.log.committed
    with pytest.raises(ValueError, match="exceeds max_entry_bytes"):
        leader.propose(b"y" * 2049)


def test_a_second_leader_in_one_term_stops_the_node_loudly():
    follower = make_node(2)
    follower.step(Message(MsgType.HEARTBEAT, 2, 1, term=5))
    assert follower.leader_id == 1
    with pytest.raises(AssertionError, match="two leaders in term 5: 1 and 3"):
        follower.step(Message(MsgType.HEARTBEAT, 2, 3, term=5))


def test_a_commit_index_beyond_the_log_is_an_invariant_failure_not_a_clamp():
    follower = make_node(
        2, persisted=PersistedState(HardState(term=1, vote=NO_NODE, commit=0), entries=[Entry(1, 1, b"a")])
    )
    with pytest.raises(AssertionError, match=r"commit 7 is out of range \[last index 1\]"):
        follower.step(Message(MsgType.HEARTBEAT, 2, 1, term=1, commit=7))


# -- observers (broker-only nodes) ---------------------------------------------------------------


def test_an_observer_finds_the_leader_by_fetch_and_follows_the_log_without_counting():
    voters = (1, 2, 3)
    net = Net(make_node(1), make_node(2), make_node(3), make_node(4, voters=voters))
    leader = net.elect(1)
    observer = net.nodes[4]
    net.tick(4, 3 * ELECTION_TICKS)  # hears nobody, so it asks every voter; the leader answers
    assert any(m.type == MsgType.FETCH and m.frm == 4 for m in net.sent)
    assert observer.leader_id == 1 and observer.role == Role.FOLLOWER
    assert leader.is_observer_progress(4)
    index = leader.propose(b"x")
    net.flush()
    assert observer.log.committed >= index and observer.log.applied >= index
    # Two voters down: the observer holding the entry does not make a majority.
    net.isolate(2)
    net.isolate(3)
    net.cut -= {frozenset((1, 4))}
    index = leader.propose(b"y")
    net.flush()
    assert observer.log.last_index >= index
    assert leader.log.committed < index, "an observer's copy must not count toward commit"


def test_an_observer_never_campaigns_nor_takes_over_leadership():
    net = Net(make_node(1), make_node(2), make_node(3), make_node(4, voters=(1, 2, 3)))
    net.tick(4, 20 * ELECTION_TICKS)
    assert net.nodes[4].role == Role.FOLLOWER and net.nodes[4].term == 0
    assert not any(m.type in (MsgType.VOTE, MsgType.PRE_VOTE) for m in net.sent if m.frm == 4)
    net.nodes[4].step(Message(MsgType.TIMEOUT_NOW, 4, 1, 0))
    assert net.nodes[4].role == Role.FOLLOWER
    leader = net.elect(1)
    with pytest.raises(ValueError, match="not another voter"):
        net.tick(4, 3 * ELECTION_TICKS)
        leader.transfer_leadership(4)


def test_a_leader_drops_an_observer_that_went_silent():
    net = Net(make_node(1), make_node(2), make_node(3), make_node(4, voters=(1, 2, 3)))
    leader = net.elect(1)
    net.tick(4, 3 * ELECTION_TICKS)
    assert leader.is_observer_progress(4)
    del net.nodes[4]
    net.tick(1, 6 * ELECTION_TICKS)
    assert 4 not in leader.progress and leader.role == Role.LEADER


# -- membership (one voter at a time, in the log) -----------------------------------------------


def _persisted(node: RaftNode) -> PersistedState:
    return PersistedState(node.hard_state, None, list(node.log.entries))


def test_an_observer_becomes_a_voter_one_change_at_a_time_and_the_set_survives_a_restart():
    from raftlog.raft.membership import MembershipError

    net = Net(make_node(1), make_node(2), make_node(3), make_node(4, voters=(1, 2, 3)))
    leader = net.elect(1)
    leader.propose(b"x")
    net.flush()
    with pytest.raises(MembershipError, match="has not caught up"):
        leader.propose_config_change(add=(4, "n4:9092"))  # it has not fetched from this leader yet
    net.tick(4, 3 * ELECTION_TICKS)
    net.cut |= {frozenset((1, 2)), frozenset((1, 3))}  # keep the change uncommitted
    index = leader.propose_config_change(add=(4, "n4:9092"))
    assert leader.voters == [1, 2, 3, 4] and leader.quorum == 3, "in force once appended"
    with pytest.raises(MembershipError, match="one change at a time"):
        leader.propose_config_change(remove=2)
    net.heal()
    net.tick(1, 2)
    assert all(n.log.committed >= index and n.voters == [1, 2, 3, 4] for n in net.nodes.values())
    assert net.nodes[4].can_campaign and net.nodes[4].voter_addresses[4] == "n4:9092"
    # KIP-853's names for the two refusals a caller can fix by asking for another node.
    with pytest.raises(MembershipError, match="is a voter already") as duplicate:
        leader.propose_config_change(add=(4, "n4:9092"))
    assert duplicate.value.reason == "DUPLICATE_VOTER"
    with pytest.raises(MembershipError, match="is not a voter") as missing:
        leader.propose_config_change(remove=9)
    assert missing.value.reason == "VOTER_NOT_FOUND"
    restarted = RaftNode(2, [1, 2, 3], _persisted(net.nodes[2]), net.nodes[2].settings, random.Random(2))
    assert restarted.voters == [1, 2, 3, 4], "the configuration in the log wins over the configured voters"


def test_a_leader_that_removes_itself_steps_down_once_the_change_commits():
    net = Net(make_node(1), make_node(2), make_node(3))
    leader = net.elect(1)
    net.flush()
    index = leader.propose_config_change(remove=1)
    net.flush()
    net.tick(2, 2 * ELECTION_TICKS)
    assert leader.log.committed >= index and leader.role == Role.FOLLOWER and not leader.can_campaign
    new_leader = next(n for n in net.nodes.values() if n.role == Role.LEADER)
    assert new_leader.id in (2, 3) and new_leader.voters == [2, 3]
    new_leader.propose(b"after")
    net.flush()
    net.tick(1, 3 * ELECTION_TICKS)  # the old leader follows as an observer
    assert leader.log.committed == new_leader.log.committed and leader.role == Role.FOLLOWER


def test_a_snapshot_carries_the_voter_set():
    net = Net(make_node(1), make_node(2), make_node(3), make_node(4, voters=(1, 2, 3)))
    leader = net.elect(1)
    net.tick(4, 3 * ELECTION_TICKS)
    leader.propose_config_change(add=(4, "n4:9092"))
    net.flush()
    leader.propose(b"y")
    net.flush()
    snapshot = leader.compact(leader.log.applied, b"state")
    restored = RaftNode(
        1, [1, 2, 3], PersistedState(leader.hard_state, snapshot, []), leader.settings, random.Random(1)
    )
    assert restored.voters == [1, 2, 3, 4] and restored.voter_addresses[4] == "n4:9092"
