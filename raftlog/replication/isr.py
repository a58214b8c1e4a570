"""The leader's view of its followers, as pure rules (Kafka's Partition/Replica logic).

- A follower is caught up at time T if it fetched, at T, from an offset >= the leader's log
  end offset, or from an offset >= the leader's end offset at its previous fetch (then it
  was caught up as of that previous fetch).
- High watermark = the smallest log end offset among ISR members (leader included).
- A follower not caught up for more than replica.lag.time.max.ms leaves the ISR.
- A follower rejoins once its log end offset reaches the high watermark and the start of
  the current leader epoch (so it holds everything this leader has acknowledged), and it
  has been caught up within replica.lag.time.max.ms (so it is not about to leave again).

The leader's ISR is in one of three states (Kafka's CommittedPartitionState, PendingExpandIsr,
PendingShrinkIsr); each says its maximal ISR, the set the high watermark must wait for. Only
Partition moves between them: an AlterPartition in flight either commits (a metadata update
with a new partition epoch) or is refused (back to the committed ISR).
"""

from __future__ import annotations

from dataclasses import dataclass

NEVER = -1.0


@dataclass
class FollowerState:
    log_end_offset: int = 0
    last_fetch_ms: float = NEVER
    last_caught_up_ms: float = NEVER
    leader_end_at_last_fetch: int = 0  # the leader's end offset when this follower last fetched

    def record_fetch(self, fetch_offset: int, leader_log_end: int, now_ms: float) -> None:
        if fetch_offset >= leader_log_end:
            self.last_caught_up_ms = now_ms
        elif fetch_offset >= self.leader_end_at_last_fetch and self.last_fetch_ms != NEVER:
            self.last_caught_up_ms = max(self.last_caught_up_ms, self.last_fetch_ms)
        self.log_end_offset = fetch_offset
        self.last_fetch_ms = now_ms
        self.leader_end_at_last_fetch = leader_log_end

    def reset(self, now_ms: float, in_isr: bool) -> None:
        """On becoming leader: ISR members count as caught up now, others as never."""
        self.last_fetch_ms = NEVER
        self.last_caught_up_ms = now_ms if in_isr else NEVER
        self.leader_end_at_last_fetch = 0


def high_watermark(
    leader_id: int, leader_log_end: int, isr: tuple[int, ...], followers: dict[int, FollowerState]
) -> int:
    ends = [leader_log_end]
    ends += [followers[r].log_end_offset for r in isr if r != leader_id and r in followers]
    return min(ends)


def out_of_sync(
    leader_id: int, isr: tuple[int, ...], followers: dict[int, FollowerState], now_ms: float, lag_max_ms: int
) -> set[int]:
    return {
        r for r in isr if r != leader_id and r in followers and now_ms - followers[r].last_caught_up_ms > lag_max_ms
    }


def ready_to_join(
    replica: int,
    isr: tuple[int, ...],
    followers: dict[int, FollowerState],
    high_wm: int,
    leader_epoch_start_offset: int,
    now_ms: float,
    lag_max_ms: int,
) -> bool:
    """Caught up in offsets AND recently (else a stalled follower whose old log end happens
    to equal the high watermark would be added and dropped again, over and over)."""
    state = followers.get(replica)
    return (
        replica not in isr
        and state is not None
        and state.log_end_offset >= high_wm
        and state.log_end_offset >= leader_epoch_start_offset
        and now_ms - state.last_caught_up_ms <= lag_max_ms
    )


@dataclass(frozen=True)
class CommittedIsr:
    """The ISR as the metadata image has it; no AlterPartition in flight."""

    isr: tuple[int, ...]

    def __post_init__(self) -> None:
        assert self.isr, "the ISR is never empty"

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        return self.isr

    @property
    def in_flight(self) -> bool:
        return False


@dataclass(frozen=True)
class PendingExpandIsr:
    """Asked to add `adding`. They count for the high watermark at once: the expansion may
    commit at any moment, and the leader must never have acknowledged records they lack."""

    committed: tuple[int, ...]
    adding: tuple[int, ...]
    requested: tuple[int, ...]

    def __post_init__(self) -> None:
        assert self.committed and self.adding, f"an expansion of {self.committed} adds someone: {self.adding}"
        assert set(self.requested) == set(self.committed) | set(self.adding), (
            self.committed,
            self.adding,
            self.requested,
        )

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        return self.requested

    @property
    def in_flight(self) -> bool:
        return True


@dataclass(frozen=True)
class PendingShrinkIsr:
    """Asked to drop `removing`. They still count for the high watermark until the shrink
    commits: the controller may refuse it, and then they are in the ISR after all."""

    committed: tuple[int, ...]
    removing: tuple[int, ...]
    requested: tuple[int, ...]

    def __post_init__(self) -> None:
        assert self.requested, f"a shrink of {self.committed} never empties the ISR"
        assert set(self.requested) == set(self.committed) - set(self.removing), (
            self.committed,
            self.removing,
            self.requested,
        )

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        return self.committed

    @property
    def in_flight(self) -> bool:
        return True


IsrState = CommittedIsr | PendingExpandIsr | PendingShrinkIsr
