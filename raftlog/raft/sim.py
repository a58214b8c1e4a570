"""Deterministic simulation of the Raft core: many nodes, one process, a simulated clock and network.

Each seed drives one run: a cluster of 3 or 5 voting RaftNodes (and, in some seeds, one or two
observers: nodes outside the voter set that follow the log, as broker-only nodes do), a network
that drops, delays, duplicates and reorders messages, partitions that form and heal, crashes that lose
everything not persisted and restarts from exactly what was, proposals, ReadIndex calls,
leadership transfers, snapshots and voter changes (the leader adds an observer as a voter or
removes a voter, itself included, one at a time: raftlog.raft.membership). After every step it checks:

- Election Safety: at most one leader per term;
- Log Matching: two logs with an entry of the same index and term agree up to it;
- Leader Completeness: every committed entry is in the log of every later leader;
- State Machine Safety: every node applies the same entry at each index;
- one voter change at a time: no leader holds two uncommitted configuration entries, and each
  configuration differs from the one before it by one voter.

and the core asserts its own invariants as state moves (legal role transitions, one leader per
term, commit <= last index, applied <= commit, ...): a broken one fails the seed the same way.
Node ids start at 0, as Kafka operators number nodes.

Then the faults stop; a leader must be elected within a bounded time and every proposal
the final leader accepted must commit on every node. A failing seed prints the command
that replays it exactly:

    python -m raftlog.raft.sim --seeds 2000            # a CI-sized campaign
    python -m raftlog.raft.sim --seeds 100000 --workers 2
    python -m raftlog.raft.sim --seed 1234 --nodes 5   # replay one run
"""

from __future__ import annotations

import argparse
import heapq
import multiprocessing
import pickle
import random
import sys
import time
from dataclasses import dataclass, field

from raftlog.raft.core import RaftNode, RaftSettings, Role
from raftlog.raft.membership import MembershipError, decode_voters, is_config
from raftlog.raft.messages import (
    Entry,
    HardState,
    Message,
    NotLeaderError,
    PersistedState,
    Ready,
    Snapshot,
)

FAULT_STEPS = 400
QUIET_STEPS = 400
ELECTION_TICKS = 10
SNAPSHOT_EVERY = 25


class SafetyViolation(AssertionError):
    pass


@dataclass
class Disk:
    """What survives a crash: only what a Ready told the node to persist."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: dict[int, Entry] = field(default_factory=dict)

    def persisted(self) -> PersistedState:
        ordered = [self.entries[i] for i in sorted(self.entries)]
        return PersistedState(
            HardState(self.hard_state.term, self.hard_state.vote, self.hard_state.commit), self.snapshot, ordered
        )

    def write(self, ready: Ready) -> None:
        if ready.snapshot is not None:
            self.snapshot = ready.snapshot
            self.entries = {}
        if ready.truncate_from is not None:
            for index in [i for i in self.entries if i >= ready.truncate_from]:
                del self.entries[index]
        for entry in ready.entries:
            self.entries[entry.index] = entry
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state


@dataclass
class SimNode:
    node_id: int
    disk: Disk = field(default_factory=Disk)
    raft: RaftNode | None = None
    applied: dict[int, bytes] = field(default_factory=dict)  # the state machine: index -> data
    down_until: int = 0


class Simulation:
    def __init__(self, seed: int, nodes: int, fault_steps: int = FAULT_STEPS, quiet_steps: int = QUIET_STEPS):
        self.seed = seed
        self.rng = random.Random(seed)
        self.settings = RaftSettings(
            election_ticks=ELECTION_TICKS,
            heartbeat_ticks=1,
            max_entries_per_message=self.rng.choice([1, 2, 8]),
            max_inflight_messages=self.rng.choice([1, 4]),
            pre_vote=True,
            check_quorum=True,
        )
        self.voter_ids = list(range(nodes))  # ids from 0, as Kafka operators number nodes
        # Drawn apart from self.rng, so that seeds without observers run as they did before them.
        observers = random.Random(f"observers-{seed}").choice([0, 0, 1, 2])
        self.ids = list(range(nodes + observers))
        self.nodes = {i: SimNode(i) for i in self.ids}
        self.fault_steps = fault_steps
        self.quiet_steps = quiet_steps
        self.step_no = 0
        self.network: list[tuple[int, int, Message]] = []  # (deliver at step, sequence, message)
        self._sequence = 0
        self._set_groups([set(self.ids)])
        self.leaders: dict[int, int] = {}  # term -> leader id
        # index -> (term, data, commit term): the commit term is the term of the first node seen
        # with the index committed, which is never below the term of the leader that committed it
        # (a node learns a commit index only from a leader of its own term).
        self.committed: dict[int, tuple[int, bytes, int]] = {}
        self.max_committed = 0  # the highest index in self.committed
        # The checks are incremental: each fact is checked once, when it appears, because the core
        # asserts it cannot change afterwards (a committed entry is never overwritten; a leader
        # never rewrites its own log). A restarted node is a new RaftNode, so it is checked anew.
        self._recorded: dict[int, tuple[RaftNode, int]] = {}  # node id -> (its RaftNode, committed index checked)
        # node id -> (leader RaftNode, its term, index checked)
        self._leader_checked: dict[int, tuple[RaftNode, int, int]] = {}
        self.applied: dict[int, bytes] = {}
        self.proposals = 0
        # Each seed draws its own fault intensities, from gentle to brutal, so campaigns cover
        # both long stable stretches and storms of crashes and partitions.
        self.drop_rate = self.rng.choice([0.0, 0.05, 0.15])
        self.duplicate_rate = self.rng.choice([0.0, 0.02, 0.1])
        self.max_delay = self.rng.choice([2, 4, 10])
        self.crash_rate = self.rng.choice([0.002, 0.01, 0.03])
        self.partition_rate = self.rng.choice([0.005, 0.02, 0.05])
        # Drawn apart from self.rng, as the observers are: seeds without voter changes run as before.
        self.config_change_rate = random.Random(f"membership-{seed}").choice([0.0, 0.02, 0.05])
        self.config_changes = 0
        for node_id in self.ids:
            self._start(node_id)

    # -- node lifecycle ------------------------------------------------------------------------

    def _start(self, node_id: int) -> None:
        node = self.nodes[node_id]
        persisted = node.disk.persisted()
        node.applied = dict(pickle.loads(persisted.snapshot.data)) if persisted.snapshot else {}
        node_rng = random.Random(self.rng.random())
        node.raft = RaftNode(node_id, self.voter_ids, persisted, self.settings, node_rng)
        if persisted.snapshot:
            node.raft.set_snapshot(persisted.snapshot)

    def _crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.raft = None
        node.down_until = self.step_no + self.rng.randint(1, 40)

    # -- network -------------------------------------------------------------------------------

    def _can_talk(self, a: int, b: int) -> bool:
        return self._group_of[a] == self._group_of[b]

    def _set_groups(self, groups: list[set[int]]) -> None:
        self.groups = groups
        self._group_of = {node_id: number for number, group in enumerate(groups) for node_id in group}

    def _send(self, msg: Message, faulty: bool) -> None:
        if faulty and self.rng.random() < self.drop_rate:
            return  # dropped
        copies = 2 if faulty and self.rng.random() < self.duplicate_rate else 1
        for _ in range(copies):
            delay = self.rng.randint(0, self.max_delay) if faulty else self.rng.randint(0, 1)
            self._sequence += 1
            heapq.heappush(self.network, (self.step_no + delay, self._sequence, msg))

    def _deliver_due(self) -> None:
        while self.network and self.network[0][0] <= self.step_no:
            _, _, msg = heapq.heappop(self.network)
            target = self.nodes[msg.to].raft
            if target is not None and self._can_talk(msg.frm, msg.to):
                target.step(msg)

    # -- one step ------------------------------------------------------------------------------

    def _inject_faults(self) -> None:
        rng = self.rng
        for node_id, node in self.nodes.items():
            if node.raft is None and self.step_no >= node.down_until:
                self._start(node_id)
            elif node.raft is not None and rng.random() < self.crash_rate:
                self._crash(node_id)
        if rng.random() < self.partition_rate:
            shuffled = self.ids[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(shuffled) - 1)
            self._set_groups([set(shuffled[:cut]), set(shuffled[cut:])])
        elif rng.random() < 2 * self.partition_rate:
            self._set_groups([set(self.ids)])
        leader = self._leader()
        if leader is not None and rng.random() < 0.005:
            others = [i for i in leader.voters if i != leader.id]
            try:
                if others:
                    leader.transfer_leadership(rng.choice(others))
            except (NotLeaderError, ValueError):
                pass
        if leader is not None and self.config_change_rate and rng.random() < self.config_change_rate:
            self._change_voters(leader)

    def _change_voters(self, leader: RaftNode) -> None:
        """Adds a node that is not a voter, or removes a voter (perhaps the leader itself)."""
        outside = [i for i in self.ids if i not in leader.voters]
        try:
            if outside and (len(leader.voters) <= 1 or self.rng.random() < 0.5):
                leader.propose_config_change(add=(self.rng.choice(outside), ""))
            elif len(leader.voters) > 1:
                leader.propose_config_change(remove=self.rng.choice(leader.voters))
            else:
                return
            self.config_changes += 1
        except (NotLeaderError, MembershipError):
            pass  # refused (one at a time, not caught up, ...): the core said why

    def _propose(self) -> None:
        leader = self._leader()
        if leader is None or self.rng.random() > 0.3:
            return
        self.proposals += 1
        try:
            leader.propose(b"p%d" % self.proposals)
        except NotLeaderError:
            pass
        if self.rng.random() < 0.05:
            leader.read_index(self.proposals)

    def _leader(self) -> RaftNode | None:
        live = [n.raft for n in self.nodes.values() if n.raft is not None and n.raft.role == Role.LEADER]
        return max(live, key=lambda r: r.term) if live else None

    def _process_ready(self, node: SimNode, faulty: bool) -> None:
        raft = node.raft
        assert raft is not None, f"node {node.node_id} is down: it has no Ready"
        ready = raft.ready()
        if ready is None:
            return
        node.disk.write(ready)
        for msg in ready.messages:
            self._send(msg, faulty)
        if ready.snapshot is not None:
            node.applied = dict(pickle.loads(ready.snapshot.data))
        for entry in ready.committed_entries:
            if entry.data:
                node.applied[entry.index] = entry.data
                self._check_apply(node.node_id, entry)
        raft.advance(ready)
        self._maybe_snapshot(node)

    def _maybe_snapshot(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None, f"node {node.node_id} is down: nothing to snapshot"
        if raft.log.applied - raft.log.snapshot_index >= SNAPSHOT_EVERY:
            snapshot = raft.compact(raft.log.applied, pickle.dumps(sorted(node.applied.items())))
            node.disk.snapshot = snapshot
            for index in [i for i in node.disk.entries if i <= snapshot.index]:
                del node.disk.entries[index]

    def step(self, faulty: bool) -> None:
        self.step_no += 1
        if faulty:
            self._inject_faults()
        self._propose()
        for node in self.nodes.values():
            if node.raft is not None:
                node.raft.tick()
        self._deliver_due()
        for node in self.nodes.values():
            if node.raft is not None:
                self._process_ready(node, faulty)
        self._check()

    # -- invariants ----------------------------------------------------------------------------

    def _fail(self, what: str) -> None:
        raise SafetyViolation(f"seed {self.seed} step {self.step_no}: {what}")

    def _check_apply(self, node_id: int, entry: Entry) -> None:
        previous = self.applied.setdefault(entry.index, entry.data)
        if previous != entry.data:
            self._fail(
                f"State Machine Safety: node {node_id} applied {entry.data!r} at {entry.index}, "
                f"another node applied {previous!r}"
            )

    def _check(self) -> None:
        live = [n.raft for n in self.nodes.values() if n.raft is not None]
        for raft in live:
            if raft.role == Role.LEADER:
                self._check_one_change_at_a_time(raft)
                known = self.leaders.setdefault(raft.term, raft.id)
                if known != raft.id:
                    self._fail(f"Election Safety: nodes {known} and {raft.id} both lead term {raft.term}")
            self._record_committed(raft)
        for raft in live:
            if raft.role == Role.LEADER:
                self._check_leader_completeness(raft)
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                self._check_log_matching(a, b)

    def _check_one_change_at_a_time(self, leader: RaftNode) -> None:
        log = leader.log
        pending = [e for e in log.entries[max(0, log.committed - log.snapshot_index) :] if is_config(e.data)]
        if len(pending) > 1:
            self._fail(f"leader {leader.id} of term {leader.term} holds {len(pending)} uncommitted voter changes")
        previous = set(leader.config_at(log.snapshot_index))
        for entry in log.entries:
            if is_config(entry.data):
                voters = set(decode_voters(entry.data))
                if len(voters ^ previous) != 1:
                    self._fail(f"voter change at {entry.index} from {sorted(previous)} to {sorted(voters)}")
                previous = voters

    def _record_committed(self, raft: RaftNode) -> None:
        """Every index a node has committed holds the same (term, data) on every node that did."""
        log = raft.log
        seen_raft, checked = self._recorded.get(raft.id, (None, 0))
        if seen_raft is not raft:
            checked = 0  # a restarted node: check everything it loaded from its disk
        low = max(log.snapshot_index, checked) + 1
        if low > log.committed:
            return
        offset = log.snapshot_index + 1
        committed = self.committed
        for entry in log.entries[low - offset : log.committed - offset + 1]:
            known = committed.get(entry.index)
            if known is None:
                committed[entry.index] = (entry.term, entry.data, raft.term)
            elif known[0] != entry.term or known[1] != entry.data:
                self._fail(
                    f"node {raft.id} committed ({entry.term}, {entry.data!r}) at {entry.index}, "
                    f"but {known[:2]} was committed"
                )
        self.max_committed = max(self.max_committed, log.committed)
        self._recorded[raft.id] = (raft, log.committed)

    def _check_leader_completeness(self, leader: RaftNode) -> None:
        """Every entry committed in an earlier term is in the leader's log. (Not those committed in
        its own term or later: a deposed leader that has not heard of the next term yet lacks the
        entries its successor commits, and that is no violation.)"""
        log = leader.log
        seen_raft, seen_term, checked = self._leader_checked.get(leader.id, (None, 0, 0))
        if seen_raft is not leader or seen_term != leader.term or checked > self.max_committed:
            checked = 0
        for index in range(max(checked, log.snapshot_index) + 1, self.max_committed + 1):
            known = self.committed.get(index)
            if known is None:
                continue  # only ever committed below some node's snapshot: nothing to compare
            term, data, commit_term = known
            if commit_term >= leader.term:
                continue
            if index > log.last_index:
                self._fail(f"Leader Completeness: leader {leader.id} of term {leader.term} lacks committed {index}")
            entry = log.entries[index - log.snapshot_index - 1]
            if entry.term != term or entry.data != data:
                self._fail(
                    f"Leader Completeness: leader {leader.id} of term {leader.term} holds "
                    f"({entry.term}, {entry.data!r}) at committed {index}, not ({term}, {data!r})"
                )
        self._leader_checked[leader.id] = (leader, leader.term, self.max_committed)

    @staticmethod
    def _check_log_matching(a: RaftNode, b: RaftNode) -> None:
        """Two logs holding an entry of the same index and term are identical up to it: find the
        highest index where the terms agree, then compare everything below it at once (entries are
        shared objects in the simulation, so the list comparison is mostly identity checks)."""
        la, lb = a.log, b.log
        low = max(la.snapshot_index, lb.snapshot_index) + 1
        index = min(la.last_index, lb.last_index)
        oa, ob = la.snapshot_index + 1, lb.snapshot_index + 1
        ea, eb = la.entries, lb.entries
        while index >= low and ea[index - oa].term != eb[index - ob].term:
            index -= 1
        if index < low:
            return
        if ea[low - oa : index - oa + 1] != eb[low - ob : index - ob + 1]:
            first = next(i for i in range(low, index + 1) if ea[i - oa] != eb[i - ob])
            raise SafetyViolation(
                f"Log Matching: nodes {a.id} and {b.id} agree at index {index} (term "
                f"{ea[index - oa].term}) but differ at {first} ({ea[first - oa]} vs {eb[first - ob]})"
            )

    # -- liveness ------------------------------------------------------------------------------

    def run(self) -> dict:
        for _ in range(self.fault_steps):
            self.step(faulty=True)
        self._set_groups([set(self.ids)])
        for node_id, node in self.nodes.items():
            if node.raft is None:
                self._start(node_id)
        elected_at = None
        for _ in range(self.quiet_steps):
            self.step(faulty=False)
            if self._leader() is not None and elected_at is None:
                elected_at = self.step_no
        self._check_liveness(elected_at)
        return {
            "seed": self.seed,
            "steps": self.step_no,
            "committed": len(self.committed),
            "terms": len(self.leaders),
            "voter_changes": self.config_changes,
        }

    def _check_liveness(self, elected_at: int | None) -> None:
        bound = 8 * ELECTION_TICKS
        if elected_at is None or elected_at - self.fault_steps > bound:
            self._fail(f"liveness: no leader within {bound} ticks after the faults stopped")
        leader = self._leader()
        if leader is None:
            self._fail("liveness: the leader elected after the faults is gone")
        assert leader is not None
        final = leader.log.last_index
        for _ in range(20 * ELECTION_TICKS):
            if all(n.raft is not None and n.raft.log.applied >= final for n in self._must_follow(leader)):
                break
            self.step(faulty=False)
        else:
            lagging = {n.node_id: n.raft.log.applied if n.raft else None for n in self.nodes.values()}
            self._fail(f"liveness: leader {leader.id}'s entries up to {final} were not applied everywhere: {lagging}")
        if self._leader() is not leader and leader.is_voter:
            self._fail("liveness: leadership changed without any fault")

    def _must_follow(self, leader: RaftNode) -> list[SimNode]:
        """Every node but a removed voter that missed its removal and still counts itself a voter of
        a configuration the leader has left: it campaigns among voters that ignore it, as the
        dissertation's removed servers do until they are shut down (or the leader hears it)."""
        return [
            n
            for n in self.nodes.values()
            if n.raft is None or n.node_id in leader.voters or not n.raft.is_voter or n.node_id in leader.progress
        ]


def run_seed(seed: int, nodes: int | None = None) -> dict:
    node_count = nodes or (3 if seed % 2 == 0 else 5)
    return Simulation(seed, node_count).run()


def _run_safely(args: tuple[int, int | None]) -> tuple[int, int, str | None]:
    seed, nodes = args
    node_count = nodes or (3 if seed % 2 == 0 else 5)
    try:
        run_seed(seed, node_count)
        return seed, node_count, None
    except AssertionError as exc:
        return seed, node_count, str(exc)


def run_campaign(seeds: range, nodes: int | None = None, workers: int = 1) -> list[tuple[int, int, str]]:
    """Runs every seed; returns the failures as (seed, node count, message)."""
    jobs = [(seed, nodes) for seed in seeds]
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            results = pool.map(_run_safely, jobs, chunksize=16)
    else:
        results = [_run_safely(job) for job in jobs]
    return [(seed, count, message) for seed, count, message in results if message is not None]


def replay_command(seed: int, nodes: int) -> str:
    return f"python -m raftlog.raft.sim --seed {seed} --nodes {nodes}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2000, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, default=None, help="replay this one seed")
    parser.add_argument("--nodes", type=int, choices=(3, 5), default=None, help="default: 3 for even seeds, 5 for odd")
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    args = parser.parse_args(argv)
    if not __debug__:
        parser.error("run without -O: the Raft core's invariants are assertions, and the simulation needs them on")
    if args.seed is not None:
        print(run_seed(args.seed, args.nodes))
        return 0
    started = time.perf_counter()
    failures = run_campaign(range(args.start, args.start + args.seeds), args.nodes, args.workers)
    elapsed_s = time.perf_counter() - started
    for seed, count, message in failures:
        print(f"FAILED {message}\n  replay: {replay_command(seed, count)}")
    print(f"{args.seeds - len(failures)} passed, {len(failures)} failed ({args.seeds} seeds in {elapsed_s:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
