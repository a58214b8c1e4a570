"""An asyncio event loop on a daemon thread, so sync clients can drive async cores."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any


class BackgroundLoop:
    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine, timeout_s: float | None = None) -> Any:
        """Runs a coroutine on the loop and waits for its result here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def submit(self, coroutine: Coroutine):
        """Schedules a coroutine; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self, timeout_s: float = 5) -> None:
        """Ends what still runs on the loop, as asyncio.run() does: every task left (grpc.aio's own
        among them: a call cancelled on close finishes its status a loop turn later) is
        cancelled and awaited, then the loop stops and is closed."""
        if self.loop.is_running():
            try:
                self.run(self._cancel_remaining_tasks(), timeout_s)
            except TimeoutError:
                pass  # the loop is stopped below all the same
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=timeout_s)
        if not self.loop.is_running():
            self.loop.close()

    async def _cancel_remaining_tasks(self) -> None:
        remaining = asyncio.all_tasks() - {asyncio.current_task()}
        for task in remaining:
            task.cancel()
        await asyncio.gather(*remaining, return_exceptions=True)
        await self.loop.shutdown_asyncgens()
