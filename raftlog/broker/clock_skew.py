"""ClockSkew: this node's wall clock against the active controller's (pure).

Time-based retention compares record timestamps with the wall clock, so a node whose clock runs
days ahead would delete data that is not old at all (issue 9 §4: a node 8 days ahead deleted old
segments of every partition it hosted). Every heartbeat answer carries the controller's wall
clock; the skew is estimated at the midpoint of the round trip (off by at most half of it). A node
whose skew is unknown or beyond `broker.clock.skew.max.ms` deletes nothing by time until it
agrees again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClockSkew:
    max_skew_ms: int
    skew_ms: float | None = None  # the controller's clock minus ours; None until a heartbeat answered

    def __post_init__(self) -> None:
        assert self.max_skew_ms > 0, f"a skew bound must be positive, not {self.max_skew_ms}"

    def observe(self, sent_ms: float, received_ms: float, controller_ms: float) -> bool | None:
        """Takes one heartbeat round trip (our wall clock when sent and answered, the controller's
        in the answer). Returns the new verdict (True: agrees) when it changed, else None."""
        before = self.agrees
        self.skew_ms = controller_ms - (sent_ms + received_ms) / 2.0
        after = self.agrees
        return after if after != before else None

    @property
    def agrees(self) -> bool:
        return self.skew_ms is not None and abs(self.skew_ms) <= self.max_skew_ms

    @property
    def time_retention_allowed(self) -> bool:
        return self.agrees
