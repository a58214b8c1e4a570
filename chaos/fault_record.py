"""What one injected fault did: the chaos run records it, the report writes it out."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FaultRecord:
    name: str
    target: int
    held_s: float
    recovered_s: float | None  # None: the cluster did not recover within RECOVERY_TIMEOUT_S
    acknowledged_while_held: int  # the workload's acknowledgements while the fault held
    effect: dict[str, int] = field(default_factory=dict)  # what the injection did, e.g. {"elections": 40}
    injected_at: float = 0.0  # monotonic s: the window the timeline report shades
    undone_at: float = 0.0
