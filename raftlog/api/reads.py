"""Read-your-writes for metadata reads served from a node's own image."""

from __future__ import annotations

from raftlog.errors import RaftlogError
from raftlog.limits import METADATA_OFFSET_WAIT_S as OFFSET_WAIT_TIMEOUT_S


async def await_applied(driver, offset: int, timeout_s: float = OFFSET_WAIT_TIMEOUT_S) -> None:
    """Waits (on the driver's future for that index, no polling) until this node has applied
    metadata `offset` (a Raft index)."""
    if not await driver.wait_applied(offset, timeout_s):
        raise RaftlogError("REQUEST_TIMED_OUT", f"this node has not applied metadata offset {offset} yet; retry")
