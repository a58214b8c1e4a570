"""The fault schedule of a campaign: a pure function of its seed. Pure (no processes, no I/O).

Every random choice of a campaign is made here, up front, from a `random.Random(seed)` of its
own: which fault comes when, and a `draw` per fault that the fault turns into any choice it
makes when applied (which node a restart hits, which segment and byte a bit flip damages). So
the same seed plans the same campaign, whatever else in the process (the producer's retry
jitter, a library) draws from the global `random`. Which node is "the leader" is decided by
the cluster at run time, as it would be in production.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# The ChaosRun method of each fault kind, in the order the per-fault tests apply them.
FAULT_KINDS = (
    "isolate_leader",
    "partition_controller",
    "pause_leader",
    "kill_leader",
    "restart_node",
    "fill_disk",
    "flip_byte",
    "skew_clock",
    "election_storm",
)
# Fault kinds only the docker backend has (chaos/docker_run.py): not in a campaign's default plan,
# which is the namespace backend's.
CONTAINER_ONLY_FAULT_KINDS = ("limit_bandwidth", "rolling_restart")
KNOWN_FAULT_KINDS = FAULT_KINDS + CONTAINER_ONLY_FAULT_KINDS
DRAW_LIMIT = 1 << 32


@dataclass(frozen=True, slots=True)
class PlannedFault:
    kind: str
    draw: int  # 0 <= draw < DRAW_LIMIT: the fault's own choices derive from it

    def __post_init__(self) -> None:
        assert self.kind in KNOWN_FAULT_KINDS, f"unknown fault kind {self.kind!r}; known: {KNOWN_FAULT_KINDS}"
        assert 0 <= self.draw < DRAW_LIMIT, f"draw {self.draw} is outside [0, {DRAW_LIMIT})"

    def __str__(self) -> str:
        return f"{self.kind} (draw {self.draw})"


def plan(seed: int, count: int, kinds: tuple[str, ...] = FAULT_KINDS) -> list[PlannedFault]:
    """`count` faults chosen uniformly from `kinds`, each with its draw."""
    if count < 0:
        raise ValueError(f"a campaign has at least 0 faults, got {count}")
    unknown = sorted(set(kinds) - set(KNOWN_FAULT_KINDS))
    if not kinds or unknown:
        raise ValueError(f"fault kinds must be a non-empty subset of {KNOWN_FAULT_KINDS}; unknown: {unknown}")
    rng = random.Random(seed)
    return [PlannedFault(rng.choice(kinds), rng.randrange(DRAW_LIMIT)) for _ in range(count)]
