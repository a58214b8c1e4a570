"""Consumer and AsyncConsumer: assign or subscribe (consumer groups), seek, poll, commit (Kafka's consumer).

Each poll first hands out records buffered by earlier fetches (up to max_poll_records);
otherwise it resolves missing positions with ListOffsets (auto_offset_reset), sends a Fetch (long
poll, fetch_max_wait_ms) to each partition leader for the partitions that have none out, and
returns as soon as any leader's answer brings records: the fetches to the other leaders stay out
and buffer what they bring for a later poll (Kafka's fetcher), so one leader's records never wait
for another leader's long poll to end. A fetched batch is kept as a lazy view
(header and CRC checked, records not decoded): ``poll()`` decodes a batch when it hands out its
first record, ``poll_batches()`` hands out whole batches whose counts and offsets come from the
header and whose records decode only if iterated. A batch that starts before the position (a
fetch may return one) is decoded at once and trimmed to the records from the position on.

With a group_id, ``subscribe`` joins the group (KIP-848; ``group_membership.py`` heartbeats in
the background) and ``poll`` reconciles the assignment the coordinator gave: partitions to give
up stop being fetched, are committed (auto-commit, in a task), passed to ``on_revoke`` and
dropped before the coordinator hears that they are free; new ones start at their committed
offset (looked up in a task; else auto_offset_reset) and are passed to ``on_assign``; the
partitions that stay are fetched throughout: a poll waiting on a fetch reconciles each step as it
comes (the heartbeat task's new answer, a commit or lookup done) while that fetch stays out, and
a fetched result counts only for the position it was fetched from. A fenced member loses everything (``on_lost``, no commit) and joins
again. Auto-commit is at least once: a poll commits (in the background, one commit at a time)
what earlier polls returned, and close() commits what the last one returned; a synchronous commit
waits for an auto-commit in flight first, so committed offsets never move back.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import grpc

from raftlog.channels import error_from_rpc
from raftlog.client import records as record_codec
from raftlog.client.background import BackgroundLoop
from raftlog.client.cluster_metadata import ClusterMetadata
from raftlog.client.group_membership import GroupMembership
from raftlog.client.pipelined import FETCH
from raftlog.errors import RaftlogError
from raftlog.limits import CONSUMER_RETRY_BACKOFF_S as RETRY_BACKOFF_S
from raftlog.log.record_batch import BatchView
from raftlog.tls import ClientSecurity
from raftlog.v1 import broker_pb2

log = logging.getLogger(__name__)

EARLIEST, LATEST = -2, -1
RECONCILE_FETCH_WAIT_MS = 20  # fetch long-poll cap while partitions are being handed over
MAX_FETCHES_PER_LEADER = 4  # fetches out to one leader at once (each for partitions no other one has)
RebalanceCallback = Callable[[set["TopicPartition"]], object]


@dataclass(frozen=True, order=True)
class TopicPartition:
    topic: str
    partition: int


class ConsumerRecord(NamedTuple):
    """One record handed out by poll(). A named tuple, not a dataclass: a consumer makes one for
    every record it reads, and a frozen dataclass's __init__ cost more than decoding the record
    (~1.9 us against ~0.4 us with tuple.__new__ here). Its headers are a tuple of (key, value)
    pairs, immutable as the record is: with no list in it, a record is not tracked by the
    garbage collector once a collection has seen it (~20% of the time of handing records out)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def _consumer_records(tp: TopicPartition, view: BatchView) -> list[ConsumerRecord]:
    topic, partition, new = tp.topic, tp.partition, tuple.__new__
    return [
        new(ConsumerRecord, (topic, partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers)))
        for r in record_codec.batch_records(view)
    ]


@dataclass(frozen=True)
class _FetchOut:
    """A Fetch sent to one leader for some partitions and not yet taken in (see _fetch_once)."""

    address: str
    positions: dict[TopicPartition, int]  # what each partition was fetched from
    task: asyncio.Task


class _Fetched:
    """A fetched batch not yet handed out in full: a lazy view, or (once decoded) its records
    with the index of the next one to hand out."""

    __slots__ = ("index", "next_offset", "records", "tp", "view")

    def __init__(self, tp: TopicPartition, view: BatchView, records: list[ConsumerRecord] | None):
        self.tp = tp
        self.view = view
        self.records = records  # None until decoded
        self.index = 0
        self.next_offset = view.header.next_offset  # the position after the whole batch

    def decoded(self) -> list[ConsumerRecord]:
        if self.records is None:
            self.records = _consumer_records(self.tp, self.view)
        return self.records

    @property
    def remaining(self) -> int:
        if self.records is None:
            return self.view.header.record_count
        return len(self.records) - self.index


class ConsumerBatch:
    """One batch (or what poll() left of one) from poll_batches(): record_count, the offsets and
    size_bytes come from the batch header; iterating decodes the records (once)."""

    __slots__ = ("_fetched", "first_offset", "last_offset", "partition", "record_count", "size_bytes", "topic")

    def __init__(self, fetched: _Fetched):
        header = fetched.view.header
        self._fetched = fetched
        self.topic = fetched.tp.topic
        self.partition = fetched.tp.partition
        self.record_count = fetched.remaining
        self.first_offset = header.base_offset if fetched.records is None else fetched.records[fetched.index].offset
        self.last_offset = header.last_offset  # the next position is last_offset + 1 (compaction may leave gaps)
        self.size_bytes = header.size

    def __len__(self) -> int:
        return self.record_count

    def __iter__(self) -> Iterator[ConsumerRecord]:
        fetched = self._fetched
        records = fetched.decoded()
        start = len(records) - self.record_count
        return iter(records[start:])

    def __repr__(self) -> str:
        return (
            f"ConsumerBatch({self.topic}-{self.partition} offsets {self.first_offset}..{self.last_offset}, "
            f"{self.record_count} records, {self.size_bytes} bytes)"
        )


class AsyncConsumer:
    def __init__(
        self,
        bootstrap_servers,
        group_id: str | None = None,
        auto_offset_reset: str = "earliest",
        fetch_max_wait_ms: int = 500,
        fetch_min_bytes: int = 1,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        max_partition_fetch_bytes: int = 1024 * 1024,
        max_poll_records: int = 500,
        request_timeout_ms: int = 30_000,
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        group_instance_id: str | None = None,
        client_id: str = "raftlog-consumer",
        rebalance_timeout_ms: int = 60_000,
        group_remote_assignor: str | None = None,
        security_protocol: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
    ):
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError("auto_offset_reset must be earliest, latest or none")
        if group_id is not None and not group_id:
            raise ValueError("group_id must not be empty")
        if group_instance_id is not None and group_id is None:
            raise ValueError("group_instance_id needs a group_id")
        if auto_commit_interval_ms <= 0:
            raise ValueError("auto_commit_interval_ms must be > 0")
        self._metadata = ClusterMetadata(
            bootstrap_servers,
            ClientSecurity.from_settings(
                security_protocol,
                ssl_cafile,
                ssl_certfile,
                ssl_keyfile,
                sasl_mechanism,
                sasl_plain_username,
                sasl_plain_password,
            ),
        )
        self._reset = auto_offset_reset
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_min_bytes = fetch_min_bytes
        self._fetch_max_bytes = fetch_max_bytes
        self._partition_max_bytes = max_partition_fetch_bytes
        self._max_poll_records = max_poll_records
        self._request_timeout_s = request_timeout_ms / 1000.0
        self._positions: dict[TopicPartition, int | None] = {}
        self._buffer: deque[_Fetched] = deque()  # fetched batches not yet handed out, in fetch order
        record_codec.c_codec()  # imported now, not in the first poll
        self._fetches: list[_FetchOut] = []  # fetches out: each buffers its results when it ends
        self.group_id = group_id
        self._group = (
            GroupMembership(
                self._metadata, group_id, group_instance_id, client_id, rebalance_timeout_ms, group_remote_assignor
            )
            if group_id
            else None
        )
        self._auto_commit = enable_auto_commit and group_id is not None
        self._auto_commit_interval_s = auto_commit_interval_ms / 1000.0
        self._last_auto_commit = time.monotonic()
        self._auto_commit_task: asyncio.Task | None = None
        self._auto_commit_offsets: dict[TopicPartition, int] = {}  # what that task commits
        self._consumed: dict[TopicPartition, int] = {}  # next offset after what poll() handed out
        self._subscribed = False
        self._callbacks: dict[str, RebalanceCallback | None] = {}
        # Reconciliation runs beside the fetching of the partitions that stay (see _reconcile):
        # partitions being given up (no longer fetched; their commit in flight) and partitions
        # being taken (their committed offsets being looked up).
        self._revoking: set[TopicPartition] = set()
        self._revoke_task: asyncio.Task | None = None
        self._assigning: set[TopicPartition] = set()
        self._assign_task: asyncio.Task | None = None

    # -- groups -----------------------------------------------------------------------------

    def subscribe(
        self,
        topics: list[str] | None = None,
        pattern: str | re.Pattern | None = None,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        """Joins the group for these topics, or for every topic matching pattern (a regex matched
        against whole names, on the coordinator, as new topics appear)."""
        if self._group is None:
            raise ValueError("subscribe() needs a group_id")
        if isinstance(topics, re.Pattern):
            topics, pattern = None, topics
        if isinstance(topics, str):
            topics = [topics]
        if (topics is None) == (pattern is None):
            raise ValueError("subscribe() takes either topics or a pattern")
        if self._positions and not self._subscribed:
            raise ValueError("the consumer has partitions from assign(); it cannot also subscribe")
        regex = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise RaftlogError("INVALID_REGULAR_EXPRESSION", f"pattern {regex!r}: {exc}") from None
        self._subscribed = True
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self._group.subscribe(list(topics or []), regex)

    async def _callback(self, kind: str, tps: set[TopicPartition]) -> None:
        callback = self._callbacks.get(kind)
        if kind == "lost" and callback is None:
            callback = self._callbacks.get("revoke")  # Kafka's default onPartitionsLost
        if callback is None or not tps:
            return
        result = callback(set(tps))
        if inspect.isawaitable(result):
            await result

    def _drop(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._positions.pop(tp, None)
            self._consumed.pop(tp, None)
        self._buffer = deque(f for f in self._buffer if f.tp in self._positions)

    def _owned(self) -> frozenset[tuple[str, int]]:
        """What the member owns for the coordinator: fetched, being given up, being taken."""
        return frozenset((tp.topic, tp.partition) for tp in (*self._positions, *self._revoking, *self._assigning))

    async def _lose_everything(self) -> set[TopicPartition]:
        for task in (self._revoke_task, self._assign_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        lost = set(self._positions) | self._revoking | self._assigning
        self._revoke_task = self._assign_task = None
        self._revoking, self._assigning = set(), set()
        self._drop(lost)
        return lost

    async def _reconcile(self) -> None:
        """Brings the owned partitions to the coordinator's latest assignment (see module doc).

        Neither step holds up the partitions that stay, as in Kafka's consumer: partitions to give
        up stop being fetched at once and their commit (auto-commit) runs in a task; once it is
        done a later poll runs on_revoke, drops them and heartbeats at once. New partitions get
        their committed offsets looked up in a task too; a later poll starts fetching them and
        runs on_assign."""
        group = self._group
        if group is None or not self._subscribed:
            return
        group.changed.clear()  # what changed up to here is handled below
        if group.error is not None:
            # Out of the group for good: what it owned is someone else's now (Kafka's
            # onPartitionsLost on a fatal heartbeat error), then the error goes to the user.
            error, group.error = group.error, None
            lost = await self._lose_everything()
            group.owned = frozenset()
            await self._callback("lost", lost)
            raise error
        if group.lost:
            lost = await self._lose_everything()
            group.lost_handled()
            await self._callback("lost", lost)
            return
        target = group.assignment
        if target is None:
            return
        if self._revoke_task is not None and self._revoke_task.done():
            revoked, self._revoking, self._revoke_task = self._revoking, set(), None
            log.info("group %s: %d partitions committed and released", self.group_id, len(revoked))
            await self._callback("revoke", revoked)
            self._drop(revoked)
            group.owned = self._owned()
            group.wake()  # tell the coordinator now: the new owner is waiting for these
        if self._assign_task is not None and self._assign_task.done():
            task, added, self._assign_task, self._assigning = self._assign_task, self._assigning, None, set()
            if task.exception() is None:
                committed = task.result()
                added = {tp for tp in added if (tp.topic, tp.partition) in target}
                log.info("group %s: fetching %d new partitions from their committed offsets", self.group_id, len(added))
                for tp in added:
                    self._positions[tp] = committed[(tp.topic, tp.partition)]
                group.owned = self._owned()
                await self._callback("assign", added)
            else:  # looked up again below
                log.warning("group %s: committed offsets not fetched: %s", self.group_id, task.exception())
        if self._revoke_task is None:
            revoked = {tp for tp in self._positions if (tp.topic, tp.partition) not in target}
            if revoked:
                offsets = {tp: o for tp, o in self._consumed.items() if tp in revoked} if self._auto_commit else {}
                for tp in revoked:
                    del self._positions[tp]  # no longer fetched; still owned until released
                self._buffer = deque(f for f in self._buffer if f.tp in self._positions)
                self._revoking = revoked
                self._revoke_task = asyncio.get_running_loop().create_task(self._commit_revoked(offsets))
        if self._assign_task is None:
            added = {TopicPartition(t, p) for t, p in target} - set(self._positions) - self._revoking
            if added:
                self._assigning = added
                self._assign_task = asyncio.get_running_loop().create_task(
                    group.committed([(tp.topic, tp.partition) for tp in added])
                )

    async def _commit_revoked(self, offsets: dict[TopicPartition, int]) -> None:
        # An auto-commit in flight may carry these partitions: it lands before they are released,
        # so it cannot move the new owner's commits back. If it carried exactly these offsets and
        # succeeded, they are committed already: no second acks=all append before the release.
        task, carried = self._auto_commit_task, self._auto_commit_offsets
        if task is not None:
            outcome: list[object] = await asyncio.gather(task, return_exceptions=True)
            if outcome[0] is True and all(carried.get(tp) == offset for tp, offset in offsets.items()):
                return
        await self._commit_quietly(offsets)

    async def _commit_quietly(self, offsets: dict[TopicPartition, int], background: bool = False) -> bool:
        """Whether the offsets are committed (a failure is logged, not raised)."""
        if not offsets:
            return True
        try:
            if background:
                await self._commit_now(offsets)
            else:
                await self.commit(offsets)
        except RaftlogError as exc:
            log.warning("group %s: commit of %d partitions failed: %s", self.group_id, len(offsets), exc)
            return False
        return True

    async def _maybe_auto_commit(self) -> None:
        """Kafka's auto-commit: asynchronous, so a slow commit never holds up poll(); one at a time."""
        if not self._auto_commit or time.monotonic() - self._last_auto_commit < self._auto_commit_interval_s:
            return
        if self._auto_commit_task is not None and not self._auto_commit_task.done():
            return
        self._last_auto_commit = time.monotonic()
        fetched = {tp: o for tp, o in self._consumed.items() if tp in self._positions}  # not what is being revoked
        self._auto_commit_offsets = fetched
        self._auto_commit_task = asyncio.get_running_loop().create_task(self._commit_quietly(fetched, background=True))

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commits offsets (default: the position after what poll() returned, for every partition
        owned); the offset committed is the next one to read, as in Kafka."""
        if self._group is None:
            raise ValueError("commit() needs a group_id")
        if offsets is None:
            offsets = {tp: o for tp, o in self._consumed.items() if tp in self._positions}
        if not offsets:
            return
        # An auto-commit still in flight carries older offsets: it must land first, or it would
        # move the committed offsets back after this one.
        if self._auto_commit_task is not None:
            await asyncio.gather(self._auto_commit_task, return_exceptions=True)
        self._auto_commit_offsets = {}  # no longer the last offsets committed (see _commit_revoked)
        await self._commit_now(offsets)

    async def _commit_now(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._group is not None, "commits need a group_id (checked by commit())"
        await self._group.commit({(tp.topic, tp.partition): o for tp, o in offsets.items()}, self._subscribed)

    def commit_async(self, offsets: dict[TopicPartition, int] | None = None) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(self.commit(offsets))

    async def committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        if self._group is None:
            raise ValueError("committed() needs a group_id")
        found = await self._group.committed([(tp.topic, tp.partition) for tp in partitions])
        return {tp: found[(tp.topic, tp.partition)] for tp in partitions}

    # -- assignment and positions -----------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        if self._subscribed:
            raise ValueError("the consumer is subscribed to a group; it cannot also assign()")
        self._consumed = {tp: o for tp, o in self._consumed.items() if tp in partitions}
        self._positions = {tp: self._positions.get(tp) for tp in partitions}
        self._buffer = deque(f for f in self._buffer if f.tp in self._positions)

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._positions:
            raise ValueError(f"{tp} is not assigned")
        if offset < 0:
            raise ValueError("offset must be >= 0")
        self._positions[tp] = offset
        self._consumed.pop(tp, None)
        self._buffer = deque(f for f in self._buffer if f.tp != tp)

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seek(tp, await self._list_offset(tp, EARLIEST))

    async def seek_to_end(self, tp: TopicPartition) -> None:
        self.seek(tp, await self._list_offset(tp, LATEST))

    async def position(self, tp: TopicPartition) -> int:
        """The offset of the next record poll() returns for tp (records already fetched but
        not yet handed out come first, as in Kafka)."""
        if self._positions.get(tp) is None:
            await self._reset_position(tp)
        for fetched in self._buffer:
            if fetched.tp == tp:
                return fetched.decoded()[fetched.index].offset
        position = self._positions[tp]
        assert position is not None, f"{tp}: no position after a reset"
        return position

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: await self._list_offset(tp, LATEST) for tp in partitions}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: await self._list_offset(tp, EARLIEST) for tp in partitions}

    async def _list_offset(self, tp: TopicPartition, timestamp: int) -> int:
        deadline = time.monotonic() + self._request_timeout_s
        while True:
            try:
                leader = await self._metadata.leader_for(tp.topic, tp.partition)
                if leader.address is None:
                    raise RaftlogError("LEADER_NOT_AVAILABLE", f"{tp} has no leader")
                request = broker_pb2.ListOffsetsRequest(
                    partitions=[
                        broker_pb2.ListOffsetsPartition(topic=tp.topic, partition=tp.partition, timestamp=timestamp)
                    ]
                )
                result = (await self._metadata.stub(leader.address).ListOffsets(request, timeout=5)).results[0]
                if result.error_reason:
                    raise RaftlogError.from_reason(result.error_reason, result.error_message)
                return result.offset
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            except RaftlogError as exc:
                error = exc
            if not error.retriable or time.monotonic() > deadline:
                raise error
            if error.refresh_metadata:
                self._metadata.invalidate()
            await asyncio.sleep(RETRY_BACKOFF_S)

    async def _reset_position(self, tp: TopicPartition) -> None:
        if self._reset == "none":
            raise RaftlogError("OFFSET_OUT_OF_RANGE", f"no valid position for {tp} and auto_offset_reset=none")
        self._positions[tp] = await self._list_offset(tp, EARLIEST if self._reset == "earliest" else LATEST)

    # -- polling ----------------------------------------------------------------------------

    async def poll(self, timeout_ms: int = 1000) -> list[ConsumerRecord]:
        """Records from the assigned partitions, waiting up to timeout_ms for some to arrive."""
        await self._fill(timeout_ms)
        await self._fetch_ahead(self._max_poll_records)
        records: list[ConsumerRecord] = []
        wanted = self._max_poll_records
        while self._buffer and wanted > 0:
            fetched = self._buffer[0]
            decoded = fetched.decoded()
            taken = decoded[fetched.index : fetched.index + wanted]
            fetched.index += len(taken)
            records.extend(taken)
            wanted -= len(taken)
            if fetched.index == len(decoded):
                self._buffer.popleft()
                self._consumed[fetched.tp] = fetched.next_offset
            else:
                self._consumed[fetched.tp] = taken[-1].offset + 1
        return records

    async def poll_batches(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[ConsumerBatch]:
        """Like poll(), in whole batches (see ConsumerBatch): no per-record work unless the caller
        iterates a batch. Hands out every buffered batch, or with max_records, whole batches until
        they hold at least max_records records. The position moves past each batch handed out."""
        await self._fill(timeout_ms)
        await self._fetch_ahead(max_records, whole_batches=True)
        batches: list[ConsumerBatch] = []
        counted = 0
        while self._buffer and (max_records is None or counted < max_records):
            fetched = self._buffer.popleft()
            batch = ConsumerBatch(fetched)
            batches.append(batch)
            counted += batch.record_count
            self._consumed[fetched.tp] = fetched.next_offset
        return batches

    async def _fill(self, timeout_ms: int) -> None:
        """Fetches until some batch is buffered or timeout_ms has passed (groups reconciled first)."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        await self._maybe_auto_commit()
        await self._reconcile()
        while not self._buffer:
            await self._reconcile()
            if self._subscribed and not self._positions:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    break
                # Nothing to fetch yet: wake as soon as an assignment comes or a lookup is done.
                await self._group_event(min(RETRY_BACKOFF_S, remaining_s))
                continue
            for tp, position in list(self._positions.items()):
                if position is None:
                    await self._reset_position(tp)
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if not self._positions or remaining_ms <= 0:
                break
            # While new partitions' offsets are looked up, short fetches: they join the fetching
            # soon, not a long poll later. Giving partitions up needs none: see _fetch_reconciling.
            wait_ms = min(remaining_ms, self._fetch_max_wait_ms)
            taking = self._assign_task is not None
            await self._fetch_reconciling(min(wait_ms, RECONCILE_FETCH_WAIT_MS) if taking else wait_ms)
            if time.monotonic() >= deadline:
                break

    def _group_waits(self) -> list[asyncio.Future]:
        """What a poll waiting on a fetch also wakes for: a new answer of the coordinator, the
        end of a revocation's commit or of a lookup of new partitions' offsets."""
        if self._group is None or not self._subscribed:
            return []
        waits: list[asyncio.Future] = [
            t for t in (self._revoke_task, self._assign_task) if t is not None and not t.done()
        ]
        waits.append(asyncio.ensure_future(self._group.changed.wait()))
        return waits

    async def _group_event(self, timeout_s: float) -> None:
        waits = self._group_waits()
        try:
            if waits:
                await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(timeout_s)
        finally:
            for wait in waits[-1:]:  # the changed.wait() task; the reconciliation tasks go on
                wait.cancel()

    async def _fetch_reconciling(self, max_wait_ms: int) -> None:
        """One fetch of the partitions owned; while it is out, the group's events are reconciled
        as they come (partitions to give up stop being fetched, their commit starts, a finished
        one is released at once), so a hand-over does not wait for the long poll, and the fetch
        of the partitions kept is never restarted for it. Results for partitions no longer
        fetched, or whose position moved meanwhile, are dropped (see _take)."""
        fetch = asyncio.ensure_future(self._fetch_once(max_wait_ms))
        try:
            while True:
                waits = self._group_waits()
                if not waits:
                    await fetch
                    return
                try:
                    done, _ = await asyncio.wait([fetch, *waits], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waits[-1].cancel()
                if fetch in done:
                    fetch.result()
                    return
                await self._reconcile()
        finally:
            if not fetch.done():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)

    async def _fetch_once(self, max_wait_ms: int) -> None:
        """Sends a Fetch to each leader for the partitions with a position and no fetch out, then
        waits up to max_wait_ms for any fetch out to end. The others stay out: each buffers its
        results when it ends (taken by this poll or a later one), so the partitions of a leader
        that answers are fetched again at once, not after every other leader's long poll. A
        partition is in one fetch at a time, unless sought since (an answer counts only for the
        position it was fetched from: see _take)."""
        await self._send_fetches(self._not_fetching(), max_wait_ms)
        if not self._fetches:
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        await asyncio.wait(
            [out.task for out in self._fetches], timeout=max_wait_ms / 1000.0, return_when=asyncio.FIRST_COMPLETED
        )
        self._take_ended_fetches()

    def _not_fetching(self) -> list[tuple[TopicPartition, int]]:
        """(partition, position) of each partition with a position and no fetch out for it. The
        positions as of now: the group's reconciliation may change them while a fetch is out;
        a partition sought (or taken again elsewhere) since its fetch went out is fetched anew."""
        fetching = {(tp, position) for out in self._fetches for tp, position in out.positions.items()}
        return [(tp, p) for tp, p in self._positions.items() if p is not None and (tp, p) not in fetching]

    async def _fetch_ahead(self, handing_out: int | None, whole_batches: bool = False) -> None:
        """Before a poll hands out what is buffered, sends the next fetch of every partition that
        has none out and none of whose batches will be left buffered once this poll has handed
        out `handing_out` records (None: all; whole_batches: poll_batches, which hands out whole
        batches), as Kafka's consumer does before poll() returns: the leader reads and sends the
        next records while this process decodes these and the caller handles them, where a fetch
        sent only once the buffer ran dry leaves each side idle in turn. Not for a partition with
        batches left buffered, so the buffer stays bounded by a fetch per partition. The fetch
        buffers what it brings when it ends, as every fetch does (see _fetch_once)."""
        if not self._buffer:
            return
        left_buffered: set[TopicPartition] = set()
        to_hand_out = handing_out
        for fetched in self._buffer:
            if to_hand_out is not None and to_hand_out <= 0:
                left_buffered.add(fetched.tp)
                continue
            remaining = fetched.remaining
            if to_hand_out is not None:
                if remaining > to_hand_out and not whole_batches:
                    left_buffered.add(fetched.tp)
                to_hand_out -= remaining
        wanted = [(tp, p) for tp, p in self._not_fetching() if tp not in left_buffered]
        if wanted:
            await self._send_fetches(wanted, self._fetch_max_wait_ms)

    async def _send_fetches(self, wanted: list[tuple[TopicPartition, int]], max_wait_ms: int) -> None:
        """Sends a Fetch to each leader for the partitions wanted (at most MAX_FETCHES_PER_LEADER
        out to one leader); each runs as a task of its own, in self._fetches until taken."""
        by_leader: dict[str, dict[TopicPartition, int]] = {}
        for tp, position in wanted:
            try:
                leader = await self._metadata.leader_for(tp.topic, tp.partition)
            except RaftlogError:
                self._metadata.invalidate()
                continue
            if leader.address is not None:
                by_leader.setdefault(leader.address, {})[tp] = position
        if wanted and not by_leader:
            self._metadata.invalidate()
        for address, requested in by_leader.items():
            if sum(out.address == address for out in self._fetches) < MAX_FETCHES_PER_LEADER:
                task = asyncio.get_running_loop().create_task(self._fetch_from(address, requested, max_wait_ms))
                self._fetches.append(_FetchOut(address, requested, task))

    def _take_ended_fetches(self) -> None:
        """Forgets the fetches that ended; one that failed unexpectedly (not a RaftlogError,
        which _fetch_from retries by itself) raises here, in the poll."""
        ended = [out for out in self._fetches if out.task.done()]
        if not ended:
            return
        self._fetches = [out for out in self._fetches if not out.task.done()]
        failures = [
            exc for exc in (out.task.exception() for out in ended if not out.task.cancelled()) if exc is not None
        ]
        for extra in failures[1:]:
            log.warning("fetch failed: %r", extra)
        if failures:
            raise failures[0]

    async def _cancel_fetches(self) -> None:
        fetches, self._fetches = self._fetches, []
        for out in fetches:
            out.task.cancel()
        await asyncio.gather(*(out.task for out in fetches), return_exceptions=True)

    async def _fetch_from(self, address: str, requested: dict[TopicPartition, int], max_wait_ms: int) -> None:
        request = broker_pb2.FetchRequest(
            max_wait_ms=max_wait_ms,
            min_bytes=self._fetch_min_bytes,
            max_bytes=self._fetch_max_bytes,
            partitions=[
                broker_pb2.FetchPartition(
                    topic=tp.topic,
                    partition=tp.partition,
                    fetch_offset=requested[tp],
                    partition_max_bytes=self._partition_max_bytes,
                    current_leader_epoch=-1,
                )
                for tp in requested
            ],
        )
        try:
            response = await self._metadata.pipelined(address, FETCH).request(request, max_wait_ms / 1000.0 + 10)
        except RaftlogError:
            self._metadata.invalidate()
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        for result in response.results:
            tp = TopicPartition(result.topic, result.partition)
            await self._take(tp, result, requested.get(tp))

    async def _take(self, tp: TopicPartition, result: broker_pb2.FetchPartitionResult, requested: int | None) -> None:
        # Only for the position it was fetched from: a partition given up, sought, or given up
        # and taken again (from its committed offset) while the fetch was out drops it.
        if tp not in self._positions or self._positions[tp] is None or self._positions[tp] != requested:
            return
        if result.error_reason == "OFFSET_OUT_OF_RANGE":
            await self._reset_position(tp)
            return
        if result.error_reason:
            if RaftlogError.from_reason(result.error_reason, result.error_message).refresh_metadata:
                self._metadata.invalidate()
            return
        position = self._positions[tp]
        assert position is not None, f"{tp}: fetched without a position"
        for view in record_codec.data_batches(result.records):
            header = view.header
            if header.last_offset < position:
                continue
            if not header.is_control:
                if header.base_offset >= position:
                    self._buffer.append(_Fetched(tp, view, None))
                else:  # the batch starts before the position: keep the records from it on
                    records = [r for r in _consumer_records(tp, view) if r.offset >= position]
                    if records:
                        self._buffer.append(_Fetched(tp, view, records))
            position = header.next_offset
        self._positions[tp] = position

    async def close(self) -> None:
        """Commits what poll() returned (auto-commit), gives the partitions up and leaves the group
        at once (a static member leaves for a while: its partitions wait for it)."""
        try:
            if self._group is not None:
                if self._auto_commit:
                    await self._commit_quietly({tp: o for tp, o in self._consumed.items() if tp in self._positions})
                if self._subscribed:
                    try:
                        if self._assign_task is not None:  # never handed out: not revoked either
                            self._assign_task.cancel()
                            await asyncio.gather(self._assign_task, return_exceptions=True)
                        if self._revoke_task is not None:
                            await asyncio.gather(self._revoke_task, return_exceptions=True)
                        await self._callback("revoke", set(self._positions) | self._revoking)
                    finally:
                        await self._group.leave()
        finally:
            await self._cancel_fetches()
            await self._metadata.close()


class Consumer:
    """Sync flavour of AsyncConsumer (its coroutines run on a background loop)."""

    def __init__(self, bootstrap_servers, **settings):
        self._background = BackgroundLoop("raftlog-consumer")
        self._consumer = self._background.run(self._make(bootstrap_servers, settings))

    @staticmethod
    async def _make(bootstrap_servers, settings) -> AsyncConsumer:
        return AsyncConsumer(bootstrap_servers, **settings)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._consumer.assign(partitions)

    def subscribe(
        self,
        topics: list[str] | None = None,
        pattern: str | re.Pattern | None = None,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        """Callbacks run on the consumer's background loop thread, during poll() or close()."""

        async def subscribe() -> None:
            self._consumer.subscribe(topics, pattern, on_assign, on_revoke, on_lost)

        self._background.run(subscribe())

    def commit(self, offsets: dict[TopicPartition, int] | None = None, asynchronous: bool = False):
        """Sync by default; asynchronous=True returns a concurrent.futures.Future."""
        if asynchronous:
            return self._background.submit(self._consumer.commit(offsets))
        return self._background.run(self._consumer.commit(offsets))

    def commit_async(self, offsets: dict[TopicPartition, int] | None = None):
        return self.commit(offsets, asynchronous=True)

    def committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        return self._background.run(self._consumer.committed(partitions))

    def assignment(self) -> set[TopicPartition]:
        return self._consumer.assignment()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(tp, offset)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self._background.run(self._consumer.seek_to_beginning(tp))

    def seek_to_end(self, tp: TopicPartition) -> None:
        self._background.run(self._consumer.seek_to_end(tp))

    def position(self, tp: TopicPartition) -> int:
        return self._background.run(self._consumer.position(tp))

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return self._background.run(self._consumer.end_offsets(partitions))

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return self._background.run(self._consumer.beginning_offsets(partitions))

    def poll(self, timeout_ms: int = 1000) -> list[ConsumerRecord]:
        return self._background.run(self._consumer.poll(timeout_ms))

    def poll_batches(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[ConsumerBatch]:
        """See AsyncConsumer.poll_batches; iterating a batch decodes it on the calling thread."""
        return self._background.run(self._consumer.poll_batches(timeout_ms, max_records))

    def close(self) -> None:
        try:
            self._background.run(self._consumer.close(), 15)
        finally:
            self._background.stop()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
