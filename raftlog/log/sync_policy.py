"""Where a flush round's fsync runs: on the event loop itself, or on a worker thread.

A worker thread keeps the loop free while the disk works, but the hand-over costs latency: on
this project's 2-core machines, traced along one acks=all write, a follower's append waited
~0.15 ms for a worker to start its round and ~0.1-0.15 ms more for the loop to hear it was done,
around an fdatasync of ~0.15-0.25 ms; and each acks=all write waits for a follower's fsync.
So a round that is a single fdatasync (one file, no directory to sync) runs on the loop when the
loop has time to spare: no round is running on a worker (the disk is not busy, and the loop is
not in a burst of rounds), and the loop's budget for fsyncs is not spent. The budget is a token
bucket: it refills at INLINE_BUDGET_FRACTION of wall time up to INLINE_BURST_S, and every fsync
run on the loop takes what it lasted. So over any stretch the loop spends at most that fraction
of its time (plus one burst) in fsyncs; under load the budget runs out and rounds go to workers
again; and a disk that turns slow (one fsync of a second) sends every round to workers until the
loop has earned that second back (ten seconds), never blocking it again meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable

INLINE_BUDGET_FRACTION = 0.1  # of the loop's time at most, over any stretch
INLINE_BURST_S = 0.01  # the most the budget holds


class SyncPolicy:
    """One event loop's accounting of flush rounds (the loop's thread only)."""

    def __init__(self, clock_s: Callable[[], float] = time.perf_counter):
        self._clock_s = clock_s
        self._budget_s = INLINE_BURST_S  # may go below 0: a slow fsync is paid back
        self._refilled_at_s = clock_s()
        self.on_workers = 0  # rounds running on worker threads now

    def runs_inline(self, files: int, directory: bool) -> bool:
        """Whether a round of `files` fdatasyncs (and a directory fsync if `directory`) runs on the loop."""
        if files != 1 or directory or self.on_workers:
            return False
        now_s = self._clock_s()
        earned_s = (now_s - self._refilled_at_s) * INLINE_BUDGET_FRACTION
        self._budget_s, self._refilled_at_s = min(INLINE_BURST_S, self._budget_s + earned_s), now_s
        return self._budget_s > 0

    async def run(self, fsyncs: Callable[[], None], files: int, directory: bool) -> None:
        """Runs a round's fsyncs, on the loop if runs_inline says so, else on a worker thread."""
        if self.runs_inline(files, directory):
            started_s = self._clock_s()
            try:
                fsyncs()
            finally:
                self._budget_s -= self._clock_s() - started_s
            return
        self.on_workers += 1
        try:
            await asyncio.to_thread(fsyncs)
        finally:
            self.on_workers -= 1
            assert self.on_workers >= 0, self.on_workers


_POLICIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SyncPolicy] = weakref.WeakKeyDictionary()


def for_running_loop() -> SyncPolicy:
    """The running event loop's policy, shared by every log it serves."""
    loop = asyncio.get_running_loop()
    policy = _POLICIES.get(loop)
    if policy is None:
        policy = _POLICIES[loop] = SyncPolicy()
    return policy
