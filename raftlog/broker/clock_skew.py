"""Whose wall clock is trusted for time-based retention (pure): one rule, both sides of it.

Time-based retention compares record timestamps with the wall clock, so a node whose clock runs
days ahead would delete data that is not old at all (issue 9 §4: a node 8 days ahead deleted old
segments of every partition it hosted). The active controller's clock is the reference, but it
is not trusted on its own word: a controller 8 days ahead compared with itself sees no skew.

- The controller (`BrokerClocks`) keeps each broker's latest skew sample: the broker's wall clock
  when it sent its heartbeat minus the controller's when it received it (off by the one-way
  delay). Its own clock is trusted only while a majority of the registered, unfenced brokers,
  itself included (it agrees with itself, sample or not), are within `broker.clock.skew.max.ms`
  of it. Every heartbeat answer carries that verdict (`controller_clock_trusted`; absent: not).
- A broker (`ClockSkew`) estimates its skew against the controller at the midpoint of each
  heartbeat round trip (off by at most half of it), and deletes by time only while that skew is
  known and within the bound AND the controller's last answer said its clock is trusted.

So a skewed controller is outvoted by its brokers and nobody deletes by time; one skewed broker
suspends alone. Samples are not replicated: a new active controller starts with none (trusts no
clock but its own vote) and learns them from the next heartbeats.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def within_bound(skew_ms: float | None, max_skew_ms: int) -> bool:
    """A skew sample that is known and at most `max_skew_ms` either way."""
    return skew_ms is not None and abs(skew_ms) <= max_skew_ms


def controller_clock_trusted(
    controller_id: int, broker_ids: Iterable[int], skews_ms: dict[int, float], max_skew_ms: int
) -> bool:
    """Whether the controller's clock is trusted: a strict majority of `broker_ids` (the registered,
    unfenced brokers) plus the controller itself agree with it. The controller counts as agreeing;
    a broker without a sample does not."""
    voters = set(broker_ids) | {controller_id}
    agreeing = sum(1 for b in voters if b == controller_id or within_bound(skews_ms.get(b), max_skew_ms))
    return 2 * agreeing > len(voters)


@dataclass
class BrokerClocks:
    """The active controller's in-memory view of its brokers' clocks (like broker sessions:
    started afresh when this node starts leading)."""

    max_skew_ms: int
    skews_ms: dict[int, float] = field(default_factory=dict)  # broker's clock minus ours, per broker

    def __post_init__(self) -> None:
        assert self.max_skew_ms > 0, f"a skew bound must be positive, not {self.max_skew_ms}"

    def reset(self) -> None:
        self.skews_ms = {}

    def observe(self, broker_id: int, broker_sent_ms: float, received_ms: float) -> None:
        """One heartbeat: the broker's wall clock when it sent it, ours when it arrived."""
        self.skews_ms[broker_id] = broker_sent_ms - received_ms

    def forget(self, broker_id: int) -> None:
        self.skews_ms.pop(broker_id, None)

    def trusted(self, controller_id: int, broker_ids: Iterable[int]) -> bool:
        return controller_clock_trusted(controller_id, broker_ids, self.skews_ms, self.max_skew_ms)


@dataclass
class ClockSkew:
    """A broker's view: its skew against the active controller, and the controller's verdict."""

    max_skew_ms: int
    skew_ms: float | None = None  # the controller's clock minus ours; None until a heartbeat answered
    controller_trusted: bool = False  # the last answer's controller_clock_trusted

    def __post_init__(self) -> None:
        assert self.max_skew_ms > 0, f"a skew bound must be positive, not {self.max_skew_ms}"

    def observe(
        self, sent_ms: float, received_ms: float, controller_ms: float, controller_trusted: bool
    ) -> bool | None:
        """Takes one heartbeat round trip (our wall clock when sent and answered, the controller's
        in the answer, and whether the controller's clock is trusted). Returns the new retention
        verdict (True: time retention allowed) when it changed, else None."""
        before = self.time_retention_allowed
        self.skew_ms = controller_ms - (sent_ms + received_ms) / 2.0
        self.controller_trusted = controller_trusted
        after = self.time_retention_allowed
        return after if after != before else None

    @property
    def agrees(self) -> bool:
        """Our clock agrees with the controller's (whether or not the controller's is trusted)."""
        return within_bound(self.skew_ms, self.max_skew_ms)

    @property
    def time_retention_allowed(self) -> bool:
        return self.agrees and self.controller_trusted
