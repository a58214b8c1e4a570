"""The node process's garbage-collection policy: the one place that touches `gc`.

CPython's full (generation 2) collection walks every container object the process holds, and a
node with thousands of partitions holds millions (each partition's log, segments, indexes,
producer state and replication state). Measured on a node following 10,000 idle partitions:
a full collection every 9 s or so, each 270-330 ms with nothing to collect, the event loop
stopped meanwhile (the p99 of an acks=all produce to another topic was set by them). The
objects that make the walk long are the long-lived ones: hosted partitions live until their
topic is deleted or moved.

So once a change of hosted partitions is in place, everything alive is frozen (`gc.freeze`,
O(1)): later collections walk only what was made since, which is what can become garbage
soon. Frozen objects are still freed by reference counting; only a reference cycle among them
outlives its last outside reference. A removed partition's log is such a cycle (its failure
listener refers back to it), so after partitions are removed the freeze is lifted, one full
collection reclaims them (one pause, per removal round, not one every few seconds), and what
is left is frozen again.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

_enabled = False


def enable() -> None:
    """Applies the policy in this process: a node's own (`raftlog node start`), never a process
    that merely hosts nodes beside other work (a test run), whose garbage it would freeze too."""
    global _enabled
    _enabled = True


def partitions_changed(opened: int, removed: int) -> None:
    """Called after hosted partitions were opened or removed (the replica manager's reconcile)."""
    assert opened >= 0 and removed >= 0, (opened, removed)
    if not _enabled:
        return
    if removed:
        gc.unfreeze()
        started = time.perf_counter()
        collected = gc.collect()
        log.debug(
            "%d partitions removed: full collection of %d objects took %.1f ms",
            removed,
            collected,
            (time.perf_counter() - started) * 1000,
        )
    if opened or removed:
        gc.freeze()
