"""Read-your-writes for metadata reads served from a node's own image."""

from __future__ import annotations

import asyncio
import time

from raftlog.errors import RaftlogError
from raftlog.limits import METADATA_OFFSET_POLL_S as OFFSET_WAIT_POLL_S
from raftlog.limits import METADATA_OFFSET_WAIT_S as OFFSET_WAIT_TIMEOUT_S


async def await_applied(driver, offset: int, timeout_s: float = OFFSET_WAIT_TIMEOUT_S) -> None:
    """Waits until this node has applied metadata `offset` (a Raft index)."""
    deadline = time.monotonic() + timeout_s
    while driver.status().applied_index < offset:
        if time.monotonic() > deadline:
            raise RaftlogError("REQUEST_TIMED_OUT", f"this node has not applied metadata offset {offset} yet; retry")
        await asyncio.sleep(OFFSET_WAIT_POLL_S)
