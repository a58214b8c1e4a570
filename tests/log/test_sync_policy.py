"""Where a flush round's fsyncs run (raftlog/log/sync_policy.py): on the loop while it has time
to spare, else on a worker thread."""

import asyncio
import os
import threading

from raftlog.log import GroupCommit, PartitionLog
from raftlog.log import partition_log as partition_log_module
from raftlog.log.record_batch import encode_batch
from raftlog.log.sync_policy import INLINE_BUDGET_FRACTION, INLINE_BURST_S, SyncPolicy


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def _where_runs(policy: SyncPolicy, files: int = 1, directory: bool = False, takes_s: float = 0.0, clock=None):
    """'loop' or 'worker': the thread the round's fsyncs ran on."""
    ran_on = []

    def fsyncs() -> None:
        ran_on.append(threading.get_ident())
        if clock is not None:
            clock.now_s += takes_s

    async def round_() -> int:
        await policy.run(fsyncs, files, directory)
        return threading.get_ident()

    loop_thread = asyncio.run(round_())
    return "loop" if ran_on == [loop_thread] else "worker"


def test_a_single_fdatasync_runs_on_the_loop_and_more_go_to_a_worker():
    policy = SyncPolicy(Clock())
    assert _where_runs(policy) == "loop"
    assert _where_runs(policy, files=2) == "worker"
    assert _where_runs(policy, directory=True) == "worker"  # a directory fsync: a segment made or sealed


def test_the_loop_spends_at_most_its_budget_in_fsyncs():
    clock = Clock()
    policy = SyncPolicy(clock)
    # Each round earns a tenth of what it takes back (wall time passes meanwhile): the 4th starts
    # within the budget and ends beyond it.
    each_s = INLINE_BURST_S / 3.2
    assert [_where_runs(policy, takes_s=each_s, clock=clock) for _ in range(6)] == ["loop"] * 4 + ["worker"] * 2
    clock.now_s += INLINE_BURST_S / INLINE_BUDGET_FRACTION  # time enough to earn the budget back
    assert _where_runs(policy, takes_s=each_s, clock=clock) == "loop"


def test_a_slow_fsync_on_the_loop_sends_rounds_to_workers_until_it_is_paid_back():
    clock = Clock()
    policy = SyncPolicy(clock)
    assert _where_runs(policy, takes_s=1.0, clock=clock) == "loop"  # the disk turned slow
    clock.now_s += 0.8 / INLINE_BUDGET_FRACTION  # with the second of the fsync: 0.9 s of the 0.99 earned back
    assert _where_runs(policy) == "worker"
    clock.now_s += 0.2 / INLINE_BUDGET_FRACTION
    assert _where_runs(policy) == "loop"


def test_while_a_round_runs_on_a_worker_the_next_goes_to_a_worker_too():
    policy = SyncPolicy(Clock())
    release = threading.Event()
    ran_on: list[str] = []

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        slow = asyncio.ensure_future(policy.run(release.wait, 2, False))  # on a worker: two files
        await asyncio.sleep(0)
        assert policy.on_workers == 1
        await policy.run(lambda: ran_on.append("loop" if threading.get_ident() == loop_thread else "worker"), 1, False)
        release.set()
        await slow
        assert policy.on_workers == 0

    asyncio.run(scenario())
    assert ran_on == ["worker"]


def test_a_group_commit_of_one_segment_fsyncs_on_the_loop_and_makes_the_append_durable(tmp_path, monkeypatch):
    synced_on: list[int] = []
    fdatasync = os.fdatasync

    def recording_fdatasync(fd: int) -> None:
        synced_on.append(threading.get_ident())
        fdatasync(fd)

    monkeypatch.setattr(partition_log_module.os, "fdatasync", recording_fdatasync)
    log = PartitionLog(tmp_path / "t-0")
    group = GroupCommit(log)

    async def scenario() -> int:
        for value in (b"a", b"b"):
            result = log.append(encode_batch([(None, value, None, 0)]), leader_epoch=0)
            await group.sync(result.last_offset)
            assert log.flushed_offset == result.last_offset + 1
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    # The first round also fsyncs the new log's directory (a worker); the second is one fdatasync.
    assert len(synced_on) == 2 and synced_on[0] != loop_thread and synced_on[1] == loop_thread
