"""Task lifetime: the node owns every background task through one TaskSupervisor.

Two kinds of task, decided where the task is started and nowhere else:
- critical: a loop the node cannot run without (the Raft tick and Ready loops, the transport's
  senders, a broker's heartbeats). If it ends with an exception, or ends at all while the node is
  running, the supervisor records a one-line reason and the node stops with a non-zero exit (and
  reports NOT_SERVING to health checks until then). A zombie node that keeps answering gRPC
  while its Raft loop is dead is worse than a node that is gone: clients and peers route around
  the latter.
- survivable: a loop that may meet an unexpected error in one round and go on with the next
  (ISR checks, retention, replica fetchers). Such loops report the error through
  `survived(loop, exc)`, which logs it with its traceback and counts it in
  `raftlog_background_errors_total{loop=...}`, so "log and go on" is visible, never silent.

Cancellation is not a failure: stopping the node cancels every task it owns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from raftlog.limits import YIELD_EVERY_PARTITIONS

log = logging.getLogger(__name__)


async def yield_every(index: int) -> None:
    """Gives the event loop a turn at every YIELD_EVERY_PARTITIONS-th partition of a long loop
    (a loop over thousands of partitions must not hold up requests, heartbeats and Raft)."""
    if index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
        await asyncio.sleep(0)


class NodeFailure(RuntimeError):
    """A task the node cannot run without failed; the message is one line for the operator."""


class TaskSupervisor:
    def __init__(self, count_error: Callable[[str], None] | None = None) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._failed = asyncio.Event() if _has_loop() else None
        self.failure: str | None = None  # the first critical failure, one line
        self._count_error = count_error
        self._stopping = False

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str, critical: bool) -> asyncio.Task:
        """Starts a task owned by the node; `critical` says whether the node can live without it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, critical))
        return task

    def _finished(self, task: asyncio.Task, critical: bool) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if critical and not self._stopping:
                self.fail(f"task {task.get_name()} ended while the node was running")
            return
        if critical:
            log.error("critical task %s failed", task.get_name(), exc_info=exc)
            self.fail(f"task {task.get_name()} failed: {type(exc).__name__}: {exc}")
        else:
            self.survived(task.get_name(), exc)

    def fail(self, reason: str) -> None:
        """Records a fatal failure; the node's run loop stops the node with this reason."""
        if self.failure is None:
            self.failure = reason.splitlines()[0] if reason else "unknown failure"
            log.critical("node failure: %s", self.failure)
        self._event().set()

    def survived(self, loop_name: str, exc: BaseException) -> None:
        """A survivable loop met an error and goes on: logged with its traceback and counted."""
        log.error("background loop %s: unexpected error, going on", loop_name, exc_info=exc)
        if self._count_error is not None:
            self._count_error(loop_name)

    async def wait_failed(self) -> str:
        await self._event().wait()
        assert self.failure is not None
        return self.failure

    def shutdown_started(self) -> None:
        """From now on a critical task that ends is part of the shutdown, not a failure."""
        self._stopping = True

    async def stop(self) -> None:
        """Cancels every task still running and waits for them to end."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _event(self) -> asyncio.Event:
        if self._failed is None:
            self._failed = asyncio.Event()
        return self._failed


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
