"""The deterministic simulation: thousands of seeds in CI, and proof that it catches real bugs."""

from __future__ import annotations

import os

import pytest

from raftlog.node_ids import NO_NODE
from raftlog.raft import sim
from raftlog.raft.messages import HardState

CI_SEEDS = int(os.environ.get("RAFTLOG_SIM_SEEDS", "2000"))


# Bounded by work (CI_SEEDS seeds), not by the suite's 600 s per-test timeout: ~150 CPU-seconds
# for 2,000 seeds (observers and voter changes made it ~35% more than before), which a busy
# shared host may stretch far past 600 s of wall time.
@pytest.mark.timeout(0)
def test_safety_and_liveness_hold_over_thousands_of_seeds():
    failures = sim.run_campaign(range(CI_SEEDS), workers=max(1, os.cpu_count() or 1))
    assert not failures, "\n".join(f"{msg}\n  replay: {sim.replay_command(seed, n)}" for seed, n, msg in failures)


def test_a_replayed_seed_runs_identically():
    assert sim.run_seed(41) == sim.run_seed(41)


def test_the_checker_catches_a_node_that_forgets_its_vote(monkeypatch):
    """A disk that drops the vote lets a restarted node vote twice in one term: two leaders."""
    original = sim.Disk.write

    def forgetful_write(self, ready):
        original(self, ready)
        self.hard_state = HardState(self.hard_state.term, NO_NODE, self.hard_state.commit)

    monkeypatch.setattr(sim.Disk, "write", forgetful_write)
    # The window that needs it is narrow (vote, crash, restart, vote again within one election);
    # seed 848 hits it. If the simulation changes, find a new seed with scripts like this one.
    failures = sim.run_campaign(range(840, 880), workers=1)
    assert any("Election Safety" in message for _, _, message in failures)


def test_the_checker_catches_a_vote_for_an_out_of_date_log(monkeypatch):
    monkeypatch.setattr(sim.RaftNode, "_handle_vote_request", _vote_for_anyone)
    failures = sim.run_campaign(range(20), workers=1)
    assert failures, "granting votes to stale logs must break Leader Completeness"


def _vote_for_anyone(self, msg):
    from raftlog.raft.messages import Message, MsgType

    pre = msg.type == MsgType.PRE_VOTE
    response = MsgType.PRE_VOTE_RESP if pre else MsgType.VOTE_RESP
    self._send(Message(response, msg.frm, self.id, msg.term if pre else self.term))
    if not pre:
        self.vote = msg.frm


def test_voter_changes_are_mixed_with_the_faults():
    runs = [sim.run_seed(seed) for seed in range(12)]
    assert sum(run["voter_changes"] for run in runs) >= 10, runs


def test_the_checker_catches_two_voter_changes_at_once(monkeypatch):
    """Without "one change at a time" a leader stacks uncommitted configuration entries."""
    original = sim.RaftNode.propose_config_change

    def eager(self, add=None, remove=None):
        self.config_index = min(self.config_index, self.log.committed)  # forget the pending change
        return original(self, add=add, remove=remove)

    monkeypatch.setattr(sim.RaftNode, "propose_config_change", eager)
    failures = sim.run_campaign(range(12), workers=1)
    assert any("uncommitted voter changes" in message for _, _, message in failures), failures
