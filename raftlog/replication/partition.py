"""One partition replica on this broker: leader or follower, high watermark, ISR, epochs.

The partition's data lives in a partition log (raftlog.log), reached through the small
`ReplicaLog` adapter in log_adapter.py. This class holds the replication state and rules;
the ReplicaManager feeds it metadata, fetch requests and the clock, and carries out ISR
changes it asks for through the controller, reporting back how they ended.

The leader's ISR state (isr.CommittedIsr / PendingExpandIsr / PendingShrinkIsr) moves only
here: prepare_isr_change starts an AlterPartition, a metadata update with a new partition epoch
commits it, isr_change_ended (refused, or nothing changed) goes back to the committed ISR.
Invariants checked where the state moves: the high watermark never passes the log end, the
leader is in its ISR, the ISR is never empty.

Waiting (acks=all, long-poll fetches) uses one ChangeNotifier shared by the broker's
partitions, notified whenever a log end, a high watermark or a role changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from raftlog.errors import RaftlogError
from raftlog.limits import SEQUENCE_WAIT_S
from raftlog.metadata.image import PartitionInfo
from raftlog.replication import isr as isr_rules
from raftlog.replication.log_adapter import AppendInfo, ReplicaLog
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.producer_state import ProducerStateTable

log = logging.getLogger(__name__)

ACKS_NONE, ACKS_LEADER, ACKS_ALL = 0, 1, -1


@dataclass(frozen=True)
class ProduceOutcome:
    base_offset: int
    log_start_offset: int
    record_count: int = 0  # records appended now (0 for an acknowledged duplicate)


@dataclass(frozen=True)
class FollowerFetchOutcome:
    records: bytes
    high_watermark: int
    log_start_offset: int
    diverging_epoch: tuple[int, int] | None  # (epoch, end offset) when the follower must truncate
    leader_epoch: int


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


class Partition:
    def __init__(
        self,
        topic: str,
        topic_id: bytes,
        index: int,
        broker_id: int,
        replica_log: ReplicaLog,
        changed: ChangeNotifier,
        clock_ms=_monotonic_ms,
    ):
        self.topic = topic
        self.topic_id = topic_id
        self.index = index
        self.broker_id = broker_id
        self.log = replica_log
        self._clock_ms = clock_ms
        self.info: PartitionInfo | None = None
        # The checkpoint is advisory and may be ahead of a log cut back by recovery.
        self.high_watermark = min(replica_log.read_high_watermark(), replica_log.log_end_offset)
        self.followers: dict[int, isr_rules.FollowerState] = {}
        self.isr_state: isr_rules.IsrState | None = None  # None until the first metadata
        self.producer_state = _rebuild_producer_state(replica_log)
        # Shared by every partition of the broker: a fetch waits on several partitions at once.
        self.changed = changed
        # Moves (with a notification of `changed`) whenever what a fetch of it would answer may
        # have changed: its log end, high watermark, role or replicas. A long poll that found
        # nothing to send re-reads only the partitions whose version moved since.
        self.version = 0
        self.leader_epoch_start_offset = 0

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.index}"

    @property
    def is_leader(self) -> bool:
        return self.info is not None and self.info.leader == self.broker_id

    @property
    def leader_epoch(self) -> int:
        return self.info.leader_epoch if self.info else -1

    @property
    def isr(self) -> tuple[int, ...]:
        """The committed ISR (what the metadata image says)."""
        return self.info.isr if self.info else ()

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The ISR the high watermark waits for: the committed one, plus replicas being added."""
        return self.isr_state.maximal_isr if self.isr_state else ()

    def _set_isr_state(self, state: isr_rules.IsrState) -> None:
        if self.is_leader:
            assert self.broker_id in state.maximal_isr, f"{self.name}: leader {self.broker_id} not in its ISR {state}"
        self.isr_state = state

    def _set_high_watermark(self, offset: int) -> None:
        assert offset <= self.log.log_end_offset, (
            f"{self.name}: high watermark {offset} above the log end {self.log.log_end_offset}"
        )
        self.high_watermark = offset

    # -- metadata ---------------------------------------------------------------------------

    def apply_metadata(self, info: PartitionInfo) -> str | None:
        """Adopts new partition state; returns "leader"/"follower" when the role must (re)start."""
        previous = self.info
        self.info = info
        pending = self.isr_state is not None and self.isr_state.in_flight
        if not pending or previous is None or info.partition_epoch != previous.partition_epoch:
            # Our AlterPartition (or a controller change, which supersedes it) has landed.
            self._set_isr_state(isr_rules.CommittedIsr(info.isr))
        if previous is not None and previous.leader_epoch == info.leader_epoch:
            if self.is_leader:
                self._track_replicas()  # a reassignment adds/removes replicas within the leader epoch
                self._recompute_high_watermark()
            return None
        return "leader" if self.is_leader else "follower"

    def notify_changed(self) -> None:
        """Wakes the waiters (acks=all, long polls) after a change to this partition."""
        self.version += 1
        self.changed.notify_all(self)

    def become_leader(self) -> None:
        """Starts a new leader epoch at the log end; followers start out caught up if in the ISR."""
        info = self.info
        assert info is not None, f"{self.name}: a role change without partition metadata"
        now_ms = self._clock_ms()
        self.log.assign_epoch(self.leader_epoch, self.log.log_end_offset)
        self.leader_epoch_start_offset = self.log.log_end_offset
        self.followers = {}
        for replica in info.replicas:
            if replica != self.broker_id:
                state = isr_rules.FollowerState()
                state.reset(now_ms, replica in info.isr)
                self.followers[replica] = state
        self._set_isr_state(isr_rules.CommittedIsr(info.isr))
        self._recompute_high_watermark()
        log.info(
            "%s: leader in epoch %d from offset %d, ISR %s",
            self.name,
            self.leader_epoch,
            self.leader_epoch_start_offset,
            list(self.isr),
        )

    def _track_replicas(self) -> None:
        """Follower states for replicas that joined the replica set (not caught up yet); none for those that left."""
        info = self.info
        assert info is not None, f"{self.name}: a role change without partition metadata"
        now_ms = self._clock_ms()
        for replica in info.replicas:
            if replica != self.broker_id and replica not in self.followers:
                state = self.followers[replica] = isr_rules.FollowerState()
                state.reset(now_ms, replica in info.isr)
        for replica in [r for r in self.followers if r not in info.replicas]:
            del self.followers[replica]

    def become_follower(self) -> None:
        info = self.info
        assert info is not None, f"{self.name}: a role change without partition metadata"
        # No truncation here: the fetcher finds the divergence point with the leader's epochs
        # (KIP-279), which is what keeps acknowledged records through repeated leader changes.
        self.followers = {}
        self._set_isr_state(isr_rules.CommittedIsr(info.isr))
        log.info("%s: follower of %d in epoch %d", self.name, info.leader, self.leader_epoch)

    # -- leader: produce --------------------------------------------------------------------

    def _check_leader(self, epoch: int | None = None) -> None:
        if not self.is_leader:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {self.broker_id} does not lead {self.name}")
        if epoch is not None and epoch >= 0 and epoch != self.leader_epoch:
            reason = "FENCED_LEADER_EPOCH" if epoch < self.leader_epoch else "UNKNOWN_LEADER_EPOCH"
            raise RaftlogError(reason, f"{self.name} is in leader epoch {self.leader_epoch}, not {epoch}")

    async def append_as_leader(
        self, records: bytes, acks: int, timeout_ms: int, min_isr: int, lag_max_ms: int | None = None
    ) -> ProduceOutcome:
        self._check_leader()
        in_sync = self.in_sync_count(lag_max_ms)
        if acks == ACKS_ALL and in_sync < min_isr:
            raise RaftlogError(
                "NOT_ENOUGH_REPLICAS", f"{self.name} has {in_sync} in-sync replicas, min.insync.replicas is {min_isr}"
            )
        batches = self.log.parse_headers(records)
        duplicate = await self._check_sequences(batches)
        epoch = self.leader_epoch
        if duplicate is not None:
            # A retry of batches already written (their answer was lost): answered as the
            # original append would be, once as durable and as replicated as acks asks for.
            first_offset, last_offset = duplicate
            await self.log.wait_durable(last_offset)
            if acks == ACKS_ALL:
                await self._await_replication(last_offset, timeout_ms, min_isr, epoch)
            return ProduceOutcome(first_offset, self.log.log_start_offset)
        # Producer state is recorded as soon as the batch is written, before the fsync, so the
        # producer's next batch (pipelined behind this one) already finds its predecessor.
        info: AppendInfo = await self.log.append_as_leader(records, epoch, on_written=self._on_written)
        if not self.is_leader or self.leader_epoch != epoch:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"{self.name} lost leadership during the append")
        self.notify_changed()
        if acks == ACKS_ALL:
            await self._await_replication(info.last_offset, timeout_ms, min_isr, epoch)
        return ProduceOutcome(info.first_offset, self.log.log_start_offset, sum(b.record_count for b in info.batches))

    def in_sync_count(self, lag_max_ms: int | None) -> int:
        """ISR members that are in sync right now. A member the leader has already found lagging
        counts as out even before the controller commits the shrink (which it cannot do while
        the metadata quorum has no majority): refusing acks=all sooner is always safe."""
        if lag_max_ms is None:
            return len(self.isr)
        lagging = isr_rules.out_of_sync(self.broker_id, self.isr, self.followers, self._clock_ms(), lag_max_ms)
        return len(self.isr) - len(lagging)

    async def _check_sequences(self, batches) -> tuple[int, int] | None:
        """Like _duplicate_of, but a batch that is ahead of its producer's sequence waits (briefly)
        for the batches before it: a pipelining producer's requests may arrive out of order."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEQUENCE_WAIT_S
        while True:
            token = self.changed.token()
            # Leadership may have moved while we waited: a broker that no longer leads must not
            # judge the batch by its stale sequences (the producer would take that for a gap).
            self._check_leader()
            try:
                return self._duplicate_of(batches)
            except RaftlogError as exc:
                ahead = any(
                    self.producer_state.is_ahead(h.producer_id, h.producer_epoch, h.base_sequence) for h in batches
                )
                if not exc.error.out_of_order_sequence or not ahead or loop.time() >= deadline:
                    raise
            await self.changed.wait(token, deadline - loop.time())

    def _on_written(self, info: AppendInfo) -> None:
        self._record_producers(info)
        # With the leader alone in the (maximal) ISR no follower fetch will move the high
        # watermark: the leader's own write must (Kafka's maybeIncrementLeaderHW after an append).
        self._recompute_high_watermark()
        self.notify_changed()

    def _duplicate_of(self, batches) -> tuple[int, int] | None:
        """(first, last) offset of the original when the batches are a retried duplicate."""
        duplicate = None
        for header in batches:
            found = self.producer_state.check(
                header.producer_id, header.producer_epoch, header.base_sequence, header.last_sequence
            )
            if found is not None:
                duplicate = (found.first_offset if duplicate is None else duplicate[0], found.last_offset)
        return duplicate

    def _record_producers(self, info: AppendInfo) -> None:
        for header in info.batches:
            self.producer_state.record(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.last_sequence,
                header.base_offset,
                header.last_offset,
            )

    async def _await_replication(self, last_offset: int, timeout_ms: int, min_isr: int, epoch: int) -> None:
        def done() -> bool:
            return self.high_watermark > last_offset or not self.is_leader or self.leader_epoch != epoch

        if not await self.changed.wait_until(done, timeout_ms / 1000.0):
            raise RaftlogError("REQUEST_TIMED_OUT", f"{self.name}: not replicated to the ISR within {timeout_ms} ms")
        if not self.is_leader or self.leader_epoch != epoch:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"{self.name}: leadership moved before replication")
        if len(self.isr) < min_isr:
            raise RaftlogError(
                "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
                f"{self.name}: written, but the ISR shrank below min.insync.replicas={min_isr}",
            )

    # -- leader: fetches --------------------------------------------------------------------

    def read_for_consumer(self, offset: int, max_bytes: int, leader_epoch: int = -1) -> tuple[bytes, int, int]:
        """(records up to the high watermark, high watermark, log start offset).

        An offset between the high watermark and the log end is valid, just not readable yet: a
        new leader's high watermark can trail the old one's for a moment, and a consumer there
        must wait, not be sent back to auto.offset.reset (Kafka's rule too)."""
        self._check_leader(leader_epoch)
        if offset < self.log.log_start_offset or offset > max(self.high_watermark, self.log.log_end_offset):
            raise RaftlogError(
                "OFFSET_OUT_OF_RANGE",
                f"{self.name}: offset {offset} is outside [{self.log.log_start_offset}, {self.log.log_end_offset}]",
            )
        records = (
            self.log.read(offset, max_bytes, max_offset=self.high_watermark) if offset < self.high_watermark else b""
        )
        return records, self.high_watermark, self.log.log_start_offset

    def epoch_end_offset(self, leader_epoch: int, current_leader_epoch: int = -1) -> tuple[int, int]:
        """(the largest epoch <= leader_epoch in this leader's log, the offset where it ends):
        Kafka's OffsetForLeaderEpoch, which a consumer asks after a leader change to learn whether
        its position survived (KIP-320); (-1, -1) when the log holds no epoch that old."""
        self._check_leader(current_leader_epoch)
        return self.log.end_offset_for_epoch(leader_epoch)

    def read_for_follower(
        self, replica_id: int, fetch_offset: int, last_fetched_epoch: int, current_leader_epoch: int, max_bytes: int
    ) -> FollowerFetchOutcome:
        self._check_leader(current_leader_epoch)
        if replica_id not in self.followers:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {replica_id} is not a replica of {self.name}")
        diverging = self._divergence(fetch_offset, last_fetched_epoch)
        if diverging is not None:
            return FollowerFetchOutcome(
                b"", self.high_watermark, self.log.log_start_offset, diverging, self.leader_epoch
            )
        if fetch_offset < self.log.log_start_offset or fetch_offset > self.log.log_end_offset:
            raise RaftlogError(
                "OFFSET_OUT_OF_RANGE",
                f"{self.name}: replica offset {fetch_offset} is outside "
                f"[{self.log.log_start_offset}, {self.log.log_end_offset}]",
            )
        self.followers[replica_id].record_fetch(fetch_offset, self.log.log_end_offset, self._clock_ms())
        if replica_id not in self.isr:
            self.changed.touch(self)  # it may be ready to join: the ISR check looks at once
        self._recompute_high_watermark()
        # max_bytes 0: a throttled follower's fetch (replication/throttle.py) that gets no bytes now.
        records = (
            self.log.read(fetch_offset, max_bytes) if fetch_offset < self.log.log_end_offset and max_bytes else b""
        )
        return FollowerFetchOutcome(records, self.high_watermark, self.log.log_start_offset, None, self.leader_epoch)

    def _divergence(self, fetch_offset: int, last_fetched_epoch: int) -> tuple[int, int] | None:
        """Where the follower's log leaves ours, from our leader-epoch cache (KIP-320/595)."""
        if last_fetched_epoch < 0 or fetch_offset == 0:
            return None
        epoch, end_offset = self.log.end_offset_for_epoch(last_fetched_epoch)
        if epoch != last_fetched_epoch or end_offset < fetch_offset:
            return (epoch, end_offset)
        return None

    def _recompute_high_watermark(self) -> None:
        if not self.is_leader:
            return
        new_hw = isr_rules.high_watermark(self.broker_id, self.log.log_end_offset, self.maximal_isr, self.followers)
        if new_hw > self.high_watermark:
            self._set_high_watermark(new_hw)
            self.log.write_high_watermark(new_hw)
            self.notify_changed()

    def isr_change_wanted(self, lag_max_ms: int, unfenced: set[int]) -> tuple[int, ...] | None:
        """The ISR this leader should ask the controller for, or None. Only unfenced brokers may
        join (the controller would refuse the others: KIP-841)."""
        info, isr_state = self.info, self.isr_state
        if not self.is_leader or info is None or isr_state is None or isr_state.in_flight:
            return None
        now_ms = self._clock_ms()
        current = set(self.isr)
        shrink = isr_rules.out_of_sync(self.broker_id, self.isr, self.followers, now_ms, lag_max_ms)
        grow = {
            r
            for r in self.followers
            if r in unfenced
            and isr_rules.ready_to_join(
                r, self.isr, self.followers, self.high_watermark, self.leader_epoch_start_offset, now_ms, lag_max_ms
            )
        }
        wanted = (current - shrink) | grow
        if wanted == current:
            return None
        return tuple(r for r in info.replicas if r in wanted)

    def prepare_isr_change(self, lag_max_ms: int, unfenced: set[int]) -> isr_rules.IsrState | None:
        """Moves to a pending state when the ISR should change; the caller sends its `requested`
        ISR as AlterPartition and reports the end with isr_change_ended. A shrink goes first and
        alone, so each state says plainly what its maximal ISR is."""
        wanted = self.isr_change_wanted(lag_max_ms, unfenced)
        if wanted is None:
            return None
        committed = self.isr
        removing = tuple(r for r in committed if r not in wanted)
        state: isr_rules.IsrState
        if removing:
            requested = tuple(r for r in committed if r not in removing)
            state = isr_rules.PendingShrinkIsr(committed, removing, requested)
        else:
            state = isr_rules.PendingExpandIsr(committed, tuple(r for r in wanted if r not in committed), wanted)
        self._set_isr_state(state)
        self._recompute_high_watermark()
        return state

    def isr_change_ended(self, state: isr_rules.IsrState, partition_epoch: int | None) -> None:
        """The controller's answer to the AlterPartition sent for `state`: the partition epoch it
        left, or None when it was refused or never sent. When the epoch moved, the metadata update
        commits the change (apply_metadata); otherwise the committed ISR stands."""
        if self.isr_state is not state or self.info is None:
            return  # already superseded by a metadata update
        if partition_epoch is None or partition_epoch == self.info.partition_epoch:
            self._set_isr_state(isr_rules.CommittedIsr(self.info.isr))

    # -- follower ---------------------------------------------------------------------------

    async def append_as_follower(
        self, records: bytes, leader_high_watermark: int, leader_log_start_offset: int = 0
    ) -> None:
        before = (self.high_watermark, self.log.log_start_offset)
        if records:
            # Producer state is recorded as soon as the batch is written, before the fsync, as on
            # the leader: a metadata update may make us leader while the fsync runs, and the new
            # epoch starts at a log end that holds these batches, so the producer's retry of them
            # must find them in the table (else it is written a second time).
            epoch = self.leader_epoch
            await self.log.append_as_follower(records, on_written=self._record_producers)
            if self.is_leader or self.leader_epoch != epoch:
                # The old leader's high watermark is not ours to take any more.
                leader_high_watermark = self.high_watermark
        new_hw = min(leader_high_watermark, self.log.log_end_offset)
        if new_hw > self.high_watermark:
            self._set_high_watermark(new_hw)
            self.log.write_high_watermark(new_hw)
        if not self.is_leader and leader_log_start_offset > self.log.log_start_offset:
            await self.log.follow_log_start(leader_log_start_offset)  # the leader's retention decides
            if self.high_watermark < self.log.log_start_offset:
                self._set_high_watermark(self.log.log_start_offset)
        if records or (self.high_watermark, self.log.log_start_offset) != before:
            # Only a change wakes the waiters: a fetch round answers for every partition followed
            # from that leader, and most of thousands of them are idle.
            self.notify_changed()

    def truncate_for_divergence(self, epoch: int, leader_end_offset: int) -> int:
        """Truncates to where our log and the leader's agree (Kafka's fetcher rule); returns the new log end.

        When we know the leader's epoch, the logs agree up to the smaller end offset of that
        epoch; when we do not, we cut back to the end of our largest smaller epoch and the next
        fetch (with that epoch as last_fetched_epoch) narrows it further.
        """
        if epoch < 0:
            target = self.high_watermark  # the leader has no epoch this old: keep what was committed
        else:
            own_epoch, own_end = self.log.end_offset_for_epoch(epoch)
            target = min(own_end, leader_end_offset) if own_epoch == epoch else own_end
        target = max(target, self.log.log_start_offset)
        cuts_records = target < self.log.log_end_offset
        if cuts_records:
            log.warning(
                "%s: truncating from %d to %d (diverged from the leader in epoch %d)",
                self.name,
                self.log.log_end_offset,
                target,
                epoch,
            )
        if target <= self.log.log_end_offset:
            # Even with no record to cut, an epoch of ours that starts at the target (a leadership
            # that wrote nothing) must go: the next fetch would name it again and never progress.
            self.log.truncate_to(target)
            self._set_high_watermark(min(self.high_watermark, target))
        if cuts_records:
            # Sequences as of the new end, from the log: the batches cut may be all the table
            # remembered of a producer whose earlier batches are still there (forgetting the
            # producer would refuse its next batch as UNKNOWN_PRODUCER_ID until it gave up).
            self.producer_state = _rebuild_producer_state(self.log)
        return self.log.log_end_offset

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.log.truncate_fully_and_start_at(offset)
        self.producer_state = ProducerStateTable()
        self._set_high_watermark(offset)

    # -- storage repair (the ReplicaManager calls this when this replica's data is corrupt) --

    def truncate_before_corruption(self, offset: int) -> int:
        """Cuts the log before a corrupt batch (found by the scrubber, a read or recovery): the
        follower fetches those records again from the leader. A leader hands its leadership
        over first (it has no one to fetch from)."""
        assert not self.is_leader, f"{self.name}: the leader must hand over before cutting its log at {offset}"
        target = max(offset, self.log.log_start_offset)
        if target < self.log.log_end_offset:
            log.warning("%s: truncating from %d to %d, before corrupt data", self.name, self.log.log_end_offset, target)
            self.log.cut_at_corruption(target)
            self.producer_state = _rebuild_producer_state(self.log)
        self.high_watermark = min(self.high_watermark, self.log.log_end_offset)
        return self.log.log_end_offset


def _rebuild_producer_state(replica_log: ReplicaLog) -> ProducerStateTable:
    """Producer sequences as of the log end, read from batch headers (no record decoding)."""
    table = ProducerStateTable()
    for header in replica_log.batch_headers():
        table.record(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.last_sequence,
            header.base_offset,
            header.last_offset,
        )
    return table
