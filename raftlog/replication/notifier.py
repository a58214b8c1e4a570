"""ChangeNotifier: a broadcast "something changed" signal for asyncio waiters, holding no lock.

Waiters (acks=all produce, long-poll fetches, sequence waits) take a token, look at the state,
and wait for a notification after the token, so none can slip by between looking and waiting.

Why not asyncio.Condition: on Python 3.11, when wait_for(condition.wait(), t) times out while
its task is itself being cancelled (a client abandoning its long poll), the inner wait can
re-acquire the condition's lock after its caller is gone; the lock then stays held for good and
every waiter and notifier of the broker blocks behind it (seen in the chaos suite after a pause).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

JOURNAL_MAX = 65_536


class ChangeNotifier:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        # What notified since the last take_touched() (the replica manager's ISR check looks at
        # those partitions only); bounded by the number of distinct sources, the hosted partitions.
        self._touched: set[object] = set()
        # The sources of the latest notifications in order (None: one that named no source), so a
        # long poll re-reads only what was notified since its last look (`sources_since`); the
        # older half is dropped past JOURNAL_MAX (a poll that far behind looks at everything).
        self._journal: list[object | None] = []
        self._journal_start = 0  # the sequence number of _journal[0]

    def token(self) -> asyncio.Event:
        """Take before looking at the state; `wait(token)` then returns on any later change."""
        return self._event

    @property
    def sequence(self) -> int:
        """Notifications so far: take it before looking, pass it to sources_since later."""
        return self._journal_start + len(self._journal)

    def notify_all(self, source: object | None = None) -> None:
        if source is not None:
            self._touched.add(source)
        self._journal.append(source)
        if len(self._journal) > JOURNAL_MAX:
            dropped = len(self._journal) // 2
            del self._journal[:dropped]
            self._journal_start += dropped
        self._event.set()
        self._event = asyncio.Event()

    def sources_since(self, sequence: int) -> list[object | None] | None:
        """The sources notified from `sequence` on; None when the journal no longer goes back
        that far (the caller then looks at everything)."""
        if sequence < self._journal_start:
            return None
        return self._journal[sequence - self._journal_start :]

    def touch(self, source: object) -> None:
        """Records a change of source without waking anyone."""
        self._touched.add(source)

    def take_touched(self) -> set[object]:
        touched, self._touched = self._touched, set()
        return touched

    async def wait(self, token: asyncio.Event, timeout_s: float) -> None:
        """Returns on the first notification after `token` was taken, or after timeout_s."""
        if timeout_s <= 0:
            return
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for runs the wait in a task of its own,
            # one more task and loop turn per wait, on the path of every acks=all write and poll.
            async with asyncio.timeout(timeout_s):
                await token.wait()
        except TimeoutError:
            pass

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """True once predicate() holds (checked after every notification); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            token = self.token()
            if predicate():
                return True
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return False
            await self.wait(token, remaining_s)
