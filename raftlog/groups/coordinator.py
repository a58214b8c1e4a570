"""The group coordinator: serves the groups whose ``__consumer_offsets`` partition this broker leads.

- A group lives on partition ``abs(hash(group_id)) % offsets.topic.num.partitions``; the leader of
  that partition is its coordinator. Anything else answers NOT_COORDINATOR, and clients find the
  coordinator again (FindCoordinator, which creates the topic on first use through the controller).
- Every change (offset commits, a group's members and assignments, deletions) is a record in
  Kafka's layout (``raftlog.groups.records``) appended with acks=all; the answer goes out only once
  the record is committed.
- Every replica of an offsets partition materializes committed records into the offset store
  (``raftlog.groups.offset_store``, RocksDB) in the background. A broker that becomes leader
  loads the rows and replays only the log beyond the applied offset, so taking over does not grow
  with the history of the topic.
- Membership rules are the pure ``ConsumerGroup``; this module runs them against the clock (a
  loop expires members whose session or rebalance timeout ran out) and persists what changed.
- Offsets of a group that has been empty for ``offsets.retention.minutes`` are deleted (the rule
  is ``group.offsets_expired``), looked for every ``offsets.retention.check.interval.ms``.

A group restored by a new coordinator keeps its members and their assignments; its epoch is
bumped, so the target assignment is computed anew (partitions that were being handed over when the
old coordinator died are placed again) and members get fresh sessions.

Classic groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, Kafka's protocol with the assignment
computed by the leader client) share the shards, the offsets and the writer: their rules are the
pure ``ClassicGroup``; here a held JoinGroup or SyncGroup is a future answered when the barrier
lets it go, after the group's state (as of its last Stable or Empty, Kafka's GroupMetadataValue)
is committed. A group id is one type at a time, as in Kafka 4.0: a JoinGroup for a consumer-type
group with members is INCONSISTENT_GROUP_PROTOCOL, a ConsumerGroupHeartbeat for a classic group
with members GROUP_ID_NOT_FOUND; an empty group of either type becomes the other on its first
request. A restored classic group is Stable with its members and assignments (fresh sessions).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from raftlog.errors import RaftlogError
from raftlog.groups import records as rec
from raftlog.groups.classic import (
    ClassicGroup,
    ClassicSettings,
    ClassicState,
    Held,
    JoinAnswer,
    JoinRequest,
    LeaveAnswer,
    SyncAnswer,
)
from raftlog.groups.group import (
    STATIC_LEAVE_EPOCH,
    ConsumerGroup,
    GroupSettings,
    GroupState,
    Heartbeat,
    Member,
    offsets_expired,
)
from raftlog.groups.offset_store import OffsetStore
from raftlog.log.record_batch import encode_batch, iter_batches
from raftlog.metadata.image import NO_LEADER
from raftlog.replication.manager import ReplicaManager
from raftlog.replication.partition import Partition
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import group_pb2

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
ACKS_ALL = -1
WRITE_TIMEOUT_MS = 5000
EXPIRY_INTERVAL_S = 0.05
MATERIALIZE_INTERVAL_S = 0.2
READ_CHUNK_BYTES = 1 << 20
MATERIALIZE_ROUND_BYTES_MAX = 8 << 20  # one round applies at most this much per partition, then yields
MAX_GROUP_ID_LENGTH = 255
MAX_RECORDS_PER_APPEND = 2000  # coalesced commits per append: bounded, well under max.message.bytes
MAX_APPENDS_IN_FLIGHT = 8  # appends to one offsets partition written and awaiting replication at once
TOPIC_WAIT_S = 5.0

CreateTopic = Callable[[str, int, int, dict[str, str]], Awaitable[None]]


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


def check_group_id(group_id: str) -> None:
    if not group_id:
        raise RaftlogError("INVALID_GROUP_ID", "the group id is empty")
    if len(group_id) > MAX_GROUP_ID_LENGTH:
        raise RaftlogError(
            "INVALID_GROUP_ID", f"the group id is {len(group_id)} characters; at most {MAX_GROUP_ID_LENGTH} are allowed"
        )


StoredGroup = rec.GroupValue | rec.ClassicGroupValue
CLASSIC_WAIT_MARGIN_S = 5.0  # a held JoinGroup/SyncGroup gives up this long after its barrier's timeout


@dataclass
class GroupEntry:
    group: ConsumerGroup  # the consumer-type group (empty while the group is classic)
    classic: ClassicGroup | None = None  # set while the group is of the classic type
    offsets: dict[tuple[str, int], rec.OffsetValue] = field(default_factory=dict)
    written: StoredGroup | None = None  # the group metadata last committed, its timestamp 0
    queued: StoredGroup | None = None  # the group metadata last handed to _append, its timestamp 0
    queued_write: asyncio.Future | None = None  # that append
    empty_since_ms: int = field(default_factory=_wall_ms)
    unstable_since: float | None = None  # monotonic time of the epoch change the group is reconciling
    # Held classic JoinGroups and SyncGroups: member id -> the futures their requests wait on.
    join_waiters: dict[str, list[asyncio.Future]] = field(default_factory=dict)
    sync_waiters: dict[str, list[asyncio.Future]] = field(default_factory=dict)

    @property
    def group_type(self) -> str:
        return "classic" if self.classic is not None else "consumer"

    @property
    def state_name(self) -> str:
        return self.classic.state.value if self.classic is not None else self.group.state.value

    @property
    def member_count(self) -> int:
        return len(self.classic.members) if self.classic is not None else len(self.group.members)

    def abandon_waiters(self, error: RaftlogError) -> None:
        """Held classic requests of a group this broker no longer coordinates get `error`."""
        for waiters in (self.join_waiters, self.sync_waiters):
            for futures in waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            waiters.clear()


@dataclass
class _PartitionWriter:
    """The records waiting for the next append to one offsets partition (see _append)."""

    pending: list[tuple[list[tuple[bytes, bytes | None]], asyncio.Future]] = field(default_factory=list)
    running: bool = False
    in_flight: set[asyncio.Future] = field(default_factory=set)  # written, awaiting replication


@dataclass
class Shard:
    """The groups of one offsets partition, loaded for one leader epoch of it."""

    partition: int
    leader_epoch: int
    groups: dict[str, GroupEntry] = field(default_factory=dict)


def _epoch_of(value: StoredGroup) -> int:
    return value.generation if isinstance(value, rec.ClassicGroupValue) else value.group_epoch


def _tps(items) -> frozenset[tuple[str, int]]:
    return frozenset((tp.topic, p) for tp in items for p in tp.partitions)


def _to_pb(tps) -> list[group_pb2.TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(tps):
        by_topic.setdefault(topic, []).append(partition)
    return [group_pb2.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def _answer(round_: list[tuple[list, asyncio.Future]], append: asyncio.Future) -> None:
    """Hands an append's outcome to every request it carried."""
    for _, done in round_:
        if done.done():
            continue
        if append.cancelled():
            done.cancel()
        elif (error := append.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(None)


class GroupCoordinator:
    def __init__(
        self,
        broker_id: int,
        config,
        replicas: ReplicaManager,
        offset_store: OffsetStore,
        create_topic: CreateTopic,
        tasks: TaskSupervisor,
        metrics=None,
    ):
        self.broker_id = broker_id
        self._config = config
        self._replicas = replicas
        self._store = offset_store
        self._create_topic = create_topic
        self._tasks = tasks
        self.metrics = metrics
        self.settings = GroupSettings(
            session_timeout_ms=config["group.consumer.session.timeout.ms"],
            heartbeat_interval_ms=config["group.consumer.heartbeat.interval.ms"],
        )
        self.classic_settings = ClassicSettings(
            initial_delay_ms=config["group.initial.rebalance.delay.ms"],
            min_session_timeout_ms=config["group.min.session.timeout.ms"],
            max_session_timeout_ms=config["group.max.session.timeout.ms"],
        )
        self._shards: dict[int, Shard] = {}
        self._load_locks: dict[int, asyncio.Lock] = {}
        self._applied: dict[int, int] = {}  # materializer: offsets partition -> applied offset
        self._counts_cache: tuple[int, dict[str, int]] = (-1, {})
        self._writers: dict[Partition, _PartitionWriter] = {}  # per partition object: a new leadership, a new queue
        self._append_linger_s = config["group.coordinator.append.linger.ms"] / 1000.0

    async def start(self) -> None:
        self._tasks.spawn(self._materialize_loop(), name="offsets-materializer", critical=True)
        self._tasks.spawn(self._expiry_loop(), name="group-expiry", critical=True)

    # -- topology -----------------------------------------------------------------------------

    def _offsets_partition_count(self) -> int | None:
        topic = self._replicas.image.topic(OFFSETS_TOPIC)
        return len(topic.partitions) if topic is not None and topic.partitions else None

    def partition_counts(self) -> dict[str, int]:
        image = self._replicas.image
        if self._counts_cache[0] != image.offset:
            topics = {name: image.topic(name) for name in image.topic_ids}
            counts = {name: len(topic.partitions) for name, topic in topics.items() if topic is not None}
            self._counts_cache = (image.offset, counts)
        return self._counts_cache[1]

    async def find_coordinator(self, group_id: str, listener: str | None = None) -> group_pb2.FindCoordinatorResponse:
        """The coordinator's address on `listener` (the one the client came in on)."""
        check_group_id(group_id)
        count = self._offsets_partition_count()
        if count is None:
            await self._create_offsets_topic()
            count = self._offsets_partition_count()
            if count is None:
                raise RaftlogError("COORDINATOR_NOT_AVAILABLE", f"{OFFSETS_TOPIC} is being created; retry")
        index = rec.partition_for_group(group_id, count)
        topic = self._replicas.image.topic(OFFSETS_TOPIC)
        assert topic is not None, f"{OFFSETS_TOPIC} has {count} partitions but is not in the image"
        info = topic.partitions[index]
        broker = self._replicas.image.brokers.get(info.leader)
        if info.leader == NO_LEADER or broker is None or broker.fenced:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", f"{OFFSETS_TOPIC}-{index} has no leader right now")
        host, port = broker.endpoint_for(listener)
        return group_pb2.FindCoordinatorResponse(node_id=info.leader, host=host, port=port, partition=index)

    async def _create_offsets_topic(self) -> None:
        image = self._replicas.image
        live = sum(1 for b in image.brokers.values() if not b.fenced)
        replication = min(self._config["offsets.topic.replication.factor"], max(live, 1))
        min_isr = min(int(self._config["min.insync.replicas"]), replication)
        configs = {"cleanup.policy": "compact", "min.insync.replicas": str(min_isr)}
        try:
            await self._create_topic(OFFSETS_TOPIC, self._config["offsets.topic.num.partitions"], replication, configs)
            log.info("created %s with replication factor %d", OFFSETS_TOPIC, replication)
        except RaftlogError as exc:
            if exc.reason != "TOPIC_ALREADY_EXISTS":
                raise
        deadline = time.monotonic() + TOPIC_WAIT_S
        while self._offsets_partition_count() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    # -- shards -------------------------------------------------------------------------------

    def _led_partition(self, index: int) -> Partition:
        try:
            partition = self._replicas.partition_by_name(OFFSETS_TOPIC, index)
        except RaftlogError as exc:
            raise self._not_led(index, f"broker {self.broker_id}: {exc.message}") from None
        if not partition.is_leader:
            raise self._not_led(index, f"broker {self.broker_id} does not lead {OFFSETS_TOPIC}-{index}")
        return partition

    def _not_led(self, index: int, message: str) -> RaftlogError:
        """NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS while the metadata already names this
        broker the leader and its replica is still taking the leadership up (a new offsets topic):
        Kafka's clients retry the latter here, but after NOT_COORDINATOR they ask FindCoordinator
        again, get this broker again, and librdkafka then never retries its OffsetFetch."""
        topic = self._replicas.image.topic(OFFSETS_TOPIC)
        info = topic.partitions.get(index) if topic is not None else None
        if info is not None and info.leader == self.broker_id:
            return RaftlogError("COORDINATOR_LOAD_IN_PROGRESS", f"{message} yet; retry")
        return RaftlogError("NOT_COORDINATOR", message)

    async def _shard(self, group_id: str) -> tuple[Shard, Partition]:
        check_group_id(group_id)
        count = self._offsets_partition_count()
        if count is None:
            raise RaftlogError("NOT_COORDINATOR", f"{OFFSETS_TOPIC} does not exist yet; find the coordinator")
        return await self._shard_at(rec.partition_for_group(group_id, count))

    async def _shard_at(self, index: int) -> tuple[Shard, Partition]:
        partition = self._led_partition(index)
        shard = self._shards.get(index)
        if shard is None or shard.leader_epoch != partition.leader_epoch:
            lock = self._load_locks.setdefault(index, asyncio.Lock())
            async with lock:
                partition = self._led_partition(index)
                shard = self._shards.get(index)
                if shard is None or shard.leader_epoch != partition.leader_epoch:
                    shard = await self._load(index, partition)
        return shard, partition

    async def _load(self, index: int, partition: Partition) -> Shard:
        started = time.monotonic()
        epoch = partition.leader_epoch
        applied, rows = await asyncio.to_thread(self._store.load, index)
        shard = Shard(index, epoch)
        for key, value in rows:
            self._apply_record(shard, key, value)
        replayed = 0
        for _, record_key, record_value in self._read_records(partition, applied, partition.log.log_end_offset):
            if record_key is not None:
                self._apply_record(shard, record_key, record_value)
                replayed += 1
        now_ms = _monotonic_ms()
        for entry in shard.groups.values():
            if entry.group.members:
                for member in entry.group.members.values():
                    member.session_deadline_ms = now_ms + self.settings.session_timeout_ms
                entry.group.group_epoch += 1  # recompute the target from what members own
        if partition.leader_epoch != epoch or not partition.is_leader:
            raise RaftlogError("NOT_COORDINATOR", f"lost {OFFSETS_TOPIC}-{index} while loading it")
        old = self._shards.get(index)
        if old is not None:
            self._abandon(old, f"{OFFSETS_TOPIC}-{index} was loaded again for leader epoch {epoch}")
        self._shards[index] = shard
        log.info(
            "%s-%d: loaded %d groups (%d rows from the offset store, %d records replayed from offset %d) in %.0f ms",
            OFFSETS_TOPIC,
            index,
            len(shard.groups),
            len(rows),
            replayed,
            applied,
            (time.monotonic() - started) * 1000,
        )
        return shard

    def _entry(self, shard: Shard, group_id: str) -> GroupEntry:
        entry = shard.groups.get(group_id)
        if entry is None:
            entry = shard.groups[group_id] = GroupEntry(ConsumerGroup(group_id, self.settings))
        return entry

    def _apply_record(self, shard: Shard, key: bytes, value: bytes | None) -> None:
        try:
            decoded = rec.decode_key(key)
        except rec.RecordFormatError as exc:
            log.error("%s-%d: skipping a record with an unknown key: %s", OFFSETS_TOPIC, shard.partition, exc)
            return
        if isinstance(decoded, rec.OffsetKey):
            entry = shard.groups.get(decoded.group)
            if value is None:
                if entry is not None:
                    entry.offsets.pop((decoded.topic, decoded.partition), None)
                return
            self._entry(shard, decoded.group).offsets[(decoded.topic, decoded.partition)] = rec.decode_offset_value(
                value
            )
            return
        if value is None:
            shard.groups.pop(decoded.group, None)
            return
        entry = self._entry(shard, decoded.group)
        stored = rec.decode_any_group_value(value)
        if isinstance(stored, rec.ClassicGroupValue):
            entry.group = ConsumerGroup(decoded.group, self.settings)
            entry.classic = ClassicGroup.restore(decoded.group, self.classic_settings, stored, _monotonic_ms())
            entry.written = entry.queued = entry.classic.stored  # nothing to write again
            return
        entry.classic = None
        self._restore(entry, stored)
        entry.written = entry.queued = None  # restored groups get a new epoch (see _load): written again

    def _restore(self, entry: GroupEntry, value: rec.GroupValue) -> None:
        group = entry.group
        group.group_epoch = group.assignment_epoch = value.group_epoch
        group.assignor = value.assignor or group.assignor
        group.members = {}
        group.target = {}
        for m in value.members:
            member = Member(
                member_id=m.member_id,
                instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topics=frozenset(m.subscribed_topics),
                subscribed_regex=m.subscribed_regex,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_deadline_ms=0,
                # A static member that left with -2 waits for its next incarnation, which
                # reconciles from epoch 0 to the target (its partitions are already its own).
                member_epoch=0 if m.member_epoch == STATIC_LEAVE_EPOCH else min(m.member_epoch, value.group_epoch),
                assigned=frozenset(m.assigned),
                left_static=m.member_epoch == STATIC_LEAVE_EPOCH,
                restored=True,
            )
            group.members[m.member_id] = member
            group.target[m.member_id] = member.assigned
        group.target_partition_counts = {}
        group.check_invariants()

    # -- reading the log ----------------------------------------------------------------------

    @staticmethod
    def _read_records(
        partition: Partition, start: int, end: int, max_bytes: int | None = None
    ) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        """(offset, key, value) of the data records in [start, end), reading at most max_bytes."""
        position = max(start, partition.log.log_start_offset)
        read_bytes = 0
        while position < end and (max_bytes is None or read_bytes < max_bytes):
            data = partition.log.read(position, READ_CHUNK_BYTES, max_offset=end)
            if not data:
                return
            read_bytes += len(data)
            for header, records in iter_batches(data):
                if header.base_offset >= end:
                    return
                if not header.is_control:
                    for record in records:
                        if position <= record.offset < end:
                            yield record.offset, record.key, record.value
                position = max(position, header.next_offset)

    # -- materializing (every replica) --------------------------------------------------------

    async def _materialize_loop(self) -> None:
        while True:
            await asyncio.sleep(MATERIALIZE_INTERVAL_S)
            try:
                await self._materialize_once()
            except Exception as exc:  # noqa: BLE001 - the next round starts again from the applied offset
                self._tasks.survived("offsets-materializer", exc)

    async def _materialize_once(self) -> None:
        hosted = self._hosted_offsets_partitions()
        for index in [i for i in self._applied if i not in hosted]:
            del self._applied[index]
        for index, partition in hosted.items():
            applied = self._applied.get(index)
            if applied is None:
                applied = self._applied[index] = await asyncio.to_thread(self._store.applied_offset, index)
            end = partition.high_watermark
            if end <= applied:
                continue
            records: list[tuple[bytes, bytes | None]] = []
            next_offset = applied
            for offset, key, value in self._read_records(partition, applied, end, MATERIALIZE_ROUND_BYTES_MAX):
                if key is not None:
                    records.append((key, value))
                next_offset = offset + 1
            if next_offset == applied and end > applied:
                next_offset = end  # only control batches or compacted-away offsets in between
            await asyncio.to_thread(self._store.apply, index, records, next_offset)
            self._applied[index] = next_offset

    def _hosted_offsets_partitions(self) -> dict[int, Partition]:
        """This broker's replicas of the offsets topic, by index: looked up by the topic's id, not
        found by a scan of every hosted partition (every MATERIALIZE_INTERVAL_S, a scan of 10,000
        idle partitions was a twentieth of an idle node's CPU)."""
        topic = self._replicas.image.topic(OFFSETS_TOPIC)
        if topic is None:
            return {}
        hosted = self._replicas.partitions
        found = ((index, hosted.get((topic.topic_id, index))) for index in topic.partitions)
        return {index: partition for index, partition in found if partition is not None}

    # -- the clock ----------------------------------------------------------------------------

    async def _expiry_loop(self) -> None:
        last_retention = time.monotonic()
        while True:
            await asyncio.sleep(EXPIRY_INTERVAL_S)
            try:
                await self._expire_once()
                if (time.monotonic() - last_retention) * 1000 >= self._config["offsets.retention.check.interval.ms"]:
                    last_retention = time.monotonic()
                    await self._retention_once()
            except RaftlogError as exc:
                log.info("group expiry: %s", exc)
            except Exception as exc:  # noqa: BLE001 - the next round checks again
                self._tasks.survived("group-expiry", exc)

    def _live_shards(self) -> list[tuple[Shard, Partition]]:
        live = []
        for index, shard in list(self._shards.items()):
            try:
                partition = self._led_partition(index)
            except RaftlogError:
                partition = None
            if partition is None or partition.leader_epoch != shard.leader_epoch:
                del self._shards[index]  # no longer ours: a later leadership loads it anew
                self._abandon(shard, f"broker {self.broker_id} no longer leads {OFFSETS_TOPIC}-{index}")
                continue
            live.append((shard, partition))
        return live

    def _abandon(self, shard: Shard, why: str) -> None:
        for entry in shard.groups.values():
            entry.abandon_waiters(RaftlogError("NOT_COORDINATOR", why))

    async def _expire_once(self) -> None:
        now_ms = _monotonic_ms()
        for shard, partition in self._live_shards():
            for entry in list(shard.groups.values()):
                if entry.classic is not None:
                    gone = entry.classic.tick(now_ms)
                    if gone:
                        log.info("classic group %s: members %s timed out", entry.classic.group_id, gone)
                    if entry.classic.join_answers or entry.classic.sync_answers or entry.classic.stored != entry.queued:
                        await self._settle_classic(partition, entry)
                    continue
                if not entry.group.members:
                    continue
                gone = entry.group.expire(now_ms)
                if gone:
                    log.info("group %s: members %s timed out", entry.group.group_id, gone)
                    await self._persist_group(partition, entry)

    async def _retention_once(self) -> None:
        retention_ms = self._config["offsets.retention.minutes"] * 60_000
        now = _wall_ms()
        for shard, partition in self._live_shards():
            for group_id, entry in list(shard.groups.items()):
                newest = max((v.commit_timestamp_ms for v in entry.offsets.values()), default=0)
                if offsets_expired(entry.member_count > 0, entry.empty_since_ms, newest, now, retention_ms):
                    log.info("group %s: empty for offsets.retention.minutes; deleting it", group_id)
                    await self._delete_group(shard, partition, group_id, entry)

    # -- writing ------------------------------------------------------------------------------

    async def _append(self, partition: Partition, records: list[tuple[bytes, bytes | None]]) -> None:
        """Appends records to an offsets partition with acks=all; returns once they are committed.

        As Kafka's coordinator runtime does, writes to one partition are coalesced and pipelined:
        while an append of the partition is awaiting replication, whatever arrives within
        group.coordinator.append.linger.ms of the first write waiting goes out in one append (at
        most MAX_RECORDS_PER_APPEND records), written at once and in arrival order, and up to
        MAX_APPENDS_IN_FLIGHT appends await their replication together. With no append out there
        is nothing to batch behind, so the write goes at once (as the producer's linger.ms here):
        a lone commit costs one acks=all round trip, not also the linger (one at a time, p50
        5.65-5.87 -> 3.78-4.08 ms). Without the linger under load (only one event-loop turn) nearly every commit
        had an append of its own at 400-600 commits/s (2,834 of 2,919 appends carried one record)
        and the coordinator spent ~2 ms of CPU per commit; with 2 ms, ~3 commits per append and
        ~1.35 ms (measured under load 5-10), which is what let it keep up with 600/s."""
        writer = self._writers.get(partition)
        if writer is None:
            writer = self._writers[partition] = _PartitionWriter()
        done = asyncio.get_running_loop().create_future()
        writer.pending.append((records, done))
        if not writer.running:
            writer.running = True
            # Not a supervised background task: it ends when the queue is empty, and every
            # request it carries awaits its outcome.
            asyncio.ensure_future(self._drain(partition, writer))
        await done

    async def _drain(self, partition: Partition, writer: _PartitionWriter) -> None:
        try:
            if writer.in_flight:
                await asyncio.sleep(self._append_linger_s)  # requests arriving meanwhile share the append
            else:
                await asyncio.sleep(0)  # what this turn of the loop brings shares it still
            while writer.pending:
                if len(writer.in_flight) >= MAX_APPENDS_IN_FLIGHT:
                    await asyncio.wait(writer.in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                taken, count = 0, 0
                while taken < len(writer.pending) and (
                    count == 0 or count + len(writer.pending[taken][0]) <= MAX_RECORDS_PER_APPEND
                ):
                    count += len(writer.pending[taken][0])
                    taken += 1
                round_, writer.pending = writer.pending[:taken], writer.pending[taken:]
                end_before = partition.log.log_end_offset
                append = asyncio.ensure_future(
                    self._append_now(partition, [r for records, _ in round_ for r in records])
                )
                writer.in_flight.add(append)
                append.add_done_callback(writer.in_flight.discard)
                append.add_done_callback(functools.partial(_answer, round_))
                append.add_done_callback(lambda _: self._forget_if_idle(partition, writer))
                # The append's first step writes the batch to the log (it was scheduled before this
                # one resumes), so the next round is written after it: the log keeps arrival order.
                await asyncio.sleep(0)
                assert append.done() or partition.log.log_end_offset > end_before, (
                    f"{OFFSETS_TOPIC}-{partition.index}: an append did not write before the next one"
                )
        finally:
            writer.running = False
            self._forget_if_idle(partition, writer)

    def _forget_if_idle(self, partition: Partition, writer: _PartitionWriter) -> None:
        """A writer is kept while anything of it is pending, draining or in flight: the next
        write must know whether an append is out (to linger behind it)."""
        if writer.running or writer.pending or writer.in_flight:
            return
        if self._writers.get(partition) is writer:
            del self._writers[partition]

    async def _append_now(self, partition: Partition, records: list[tuple[bytes, bytes | None]]) -> None:
        now = _wall_ms()
        batch = encode_batch([(key, value, None, now) for key, value in records])
        min_isr = self._replicas.topic_settings(OFFSETS_TOPIC).min_insync_replicas
        try:
            await partition.append_as_leader(
                batch, ACKS_ALL, WRITE_TIMEOUT_MS, min_isr, self._replicas.replica_lag_time_max_ms()
            )
        except RaftlogError as exc:
            if exc.reason == "NOT_LEADER_OR_FOLLOWER":
                raise RaftlogError("NOT_COORDINATOR", exc.message) from None
            raise

    def _group_value(self, group: ConsumerGroup) -> rec.GroupValue:
        members = tuple(
            rec.MemberRecord(
                m.member_id,
                m.instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                self.settings.session_timeout_ms,
                tuple(sorted(m.subscribed_topics)),
                m.subscribed_regex,
                STATIC_LEAVE_EPOCH if m.left_static else m.member_epoch,  # Kafka stores -2 as the epoch
                tuple(sorted(m.assigned)),
            )
            for m in sorted(group.members.values(), key=lambda m: m.member_id)
        )
        return rec.GroupValue(group.group_epoch, group.assignor, _wall_ms(), members)

    async def _persist_group(self, partition: Partition, entry: GroupEntry) -> None:
        """Returns once the group's state as of this call is committed (acks=all), so no answer
        tells a member what a new coordinator would not know. A state already on its way (a
        plain heartbeat: session deadlines are not persisted) waits for that append only; a new
        one is appended at once, behind the earlier ones (appends keep their order), instead of
        waiting for them to finish first."""
        comparable: StoredGroup
        if entry.classic is not None:
            if entry.classic.stored is None:
                return  # nothing settled to write yet (a first rebalance under way)
            comparable = entry.classic.stored
            encoded = rec.encode_classic_group_value(dataclasses.replace(comparable, state_timestamp_ms=_wall_ms()))
        else:
            value = self._group_value(entry.group)
            comparable = rec.GroupValue(value.group_epoch, value.assignor, 0, value.members)
            encoded = rec.encode_group_value(value)
        if comparable == entry.queued:
            if entry.queued_write is not None:
                await asyncio.shield(entry.queued_write)  # a failed append fails every request waiting on it
            return
        if not comparable.members:
            entry.empty_since_ms = _wall_ms()
        write = asyncio.ensure_future(
            self._append(partition, [(rec.encode_group_key(rec.GroupKey(entry.group.group_id)), encoded)])
        )
        write.add_done_callback(lambda f: f.cancelled() or f.exception())
        entry.queued, entry.queued_write = comparable, write
        try:
            await asyncio.shield(write)
        except BaseException:
            if entry.queued is comparable:
                entry.queued = entry.queued_write = None  # not known to be written: the next change writes again
            raise
        if entry.queued_write is write:
            entry.queued_write = None
        epoch_moved = entry.written is None or _epoch_of(entry.written) != _epoch_of(comparable)
        entry.written = comparable
        if self.metrics and epoch_moved:
            self.metrics.group_rebalanced()

    # -- the API ------------------------------------------------------------------------------

    async def heartbeat(
        self,
        request: group_pb2.ConsumerGroupHeartbeatRequest,
        client_host: str,
        describable: Callable[[str], bool] | None = None,
    ) -> group_pb2.ConsumerGroupHeartbeatResponse:
        """One KIP-848 heartbeat; `describable` says which topics the caller may Describe (a
        regex subscription matches only those; None: ACLs are off)."""
        shard, partition = await self._shard(request.group_id)
        if request.member_epoch < 0 and request.group_id not in shard.groups:
            return group_pb2.ConsumerGroupHeartbeatResponse(
                member_id=request.member_id, member_epoch=request.member_epoch
            )
        if request.member_epoch > 0 and request.group_id not in shard.groups:
            raise RaftlogError("UNKNOWN_MEMBER_ID", f"group {request.group_id!r} has no member {request.member_id!r}")
        entry = self._entry(shard, request.group_id)
        if entry.classic is not None:
            if entry.classic.members or request.member_epoch != 0:
                raise RaftlogError(
                    "GROUP_ID_NOT_FOUND", f"group {request.group_id!r} is a classic group, not a consumer group"
                )
            entry.classic = None  # an empty classic group becomes a consumer group (its offsets stay)
        hb = Heartbeat(
            member_id=request.member_id,
            member_epoch=request.member_epoch,
            instance_id=request.instance_id or None,
            client_id=request.client_id,
            client_host=client_host,
            rebalance_timeout_ms=request.rebalance_timeout_ms or 60_000,
            subscribed_topics=tuple(request.subscribed_topic_names)
            if request.subscription_changed and not request.subscribed_regex
            else None,
            subscribed_regex=request.subscribed_regex or None if request.subscription_changed else None,
            server_assignor=request.server_assignor or None,
            owned=_tps(request.owned_partitions) if request.owned_sent else None,
            describable=describable,
        )
        answer = entry.group.heartbeat(hb, _monotonic_ms(), self.partition_counts())
        await self._persist_group(partition, entry)
        self._track_rebalance(entry)
        return group_pb2.ConsumerGroupHeartbeatResponse(
            member_id=answer.member_id,
            member_epoch=answer.member_epoch,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            assignment=_to_pb(answer.assignment),
        )

    def _track_rebalance(self, entry: GroupEntry) -> None:
        if entry.group.state in (GroupState.STABLE, GroupState.EMPTY):
            if entry.unstable_since is not None and self.metrics:
                self.metrics.group_stable_after(time.monotonic() - entry.unstable_since)
            entry.unstable_since = None
        elif entry.unstable_since is None:
            entry.unstable_since = time.monotonic()

    async def commit(
        self, request: group_pb2.OffsetCommitRequest, instance_id: str | None = None
    ) -> group_pb2.OffsetCommitResponse:
        """member_epoch is a classic group's generation (fenced by it) and instance_id its
        member's group.instance.id (Kafka's OffsetCommit v7+)."""
        started = time.perf_counter()
        shard, partition = await self._shard(request.group_id)
        entry = shard.groups.get(request.group_id)
        if entry is not None and entry.classic is not None:
            entry.classic.validate_commit(request.member_id, instance_id, request.member_epoch, _monotonic_ms())
        elif entry is None:
            if request.member_id or request.member_epoch >= 0:
                raise RaftlogError(
                    "UNKNOWN_MEMBER_ID", f"group {request.group_id!r} has no member {request.member_id!r}"
                )
        else:
            entry.group.validate_commit(request.member_id, request.member_epoch)
        image = self._replicas.image
        results, writes = [], []
        now = _wall_ms()
        for o in request.offsets:
            result = group_pb2.PartitionError(topic=o.topic, partition=o.partition)
            topic = image.topic(o.topic)
            if topic is None or o.partition not in topic.partitions:
                result.error_reason = "UNKNOWN_TOPIC_OR_PARTITION"
                result.error_message = f"{o.topic}-{o.partition} does not exist"
            elif o.offset < 0:
                result.error_reason = "OFFSET_OUT_OF_RANGE"
                result.error_message = f"offset {o.offset} is negative"
            else:
                value = rec.OffsetValue(o.offset, o.leader_epoch, o.metadata, now)
                writes.append(((o.topic, o.partition), value))
            results.append(result)
        if writes:
            try:
                await self._append(
                    partition,
                    [
                        (rec.encode_offset_key(rec.OffsetKey(request.group_id, t, p)), rec.encode_offset_value(v))
                        for (t, p), v in writes
                    ],
                )
            except RaftlogError:
                if self.metrics:
                    self.metrics.offset_commit_failed()
                raise
            entry = self._entry(shard, request.group_id)
            for tp, value in writes:
                entry.offsets[tp] = value
        if self.metrics:
            self.metrics.offsets_committed(len(writes), time.perf_counter() - started)
        return group_pb2.OffsetCommitResponse(results=results)

    async def fetch_offsets(self, request: group_pb2.OffsetFetchRequest) -> group_pb2.OffsetFetchResponse:
        shard, _ = await self._shard(request.group_id)
        entry = shard.groups.get(request.group_id)
        offsets = entry.offsets if entry is not None else {}
        wanted = sorted(_tps(request.partitions)) if request.partitions else sorted(offsets)
        response = group_pb2.OffsetFetchResponse()
        for topic, index in wanted:
            value = offsets.get((topic, index))
            if value is None:
                response.offsets.append(
                    group_pb2.CommittedOffset(topic=topic, partition=index, offset=-1, leader_epoch=-1)
                )
            else:
                response.offsets.append(
                    group_pb2.CommittedOffset(
                        topic=topic,
                        partition=index,
                        offset=value.offset,
                        leader_epoch=value.leader_epoch,
                        metadata=value.metadata,
                        commit_timestamp_ms=value.commit_timestamp_ms,
                    )
                )
        return response

    async def list_groups(self) -> group_pb2.ListGroupsResponse:
        response = group_pb2.ListGroupsResponse()
        count = self._offsets_partition_count() or 0
        for index in range(count):
            try:
                shard, _ = await self._shard_at(index)
            except RaftlogError:
                continue  # not ours
            for group_id, entry in sorted(shard.groups.items()):
                response.groups.append(
                    group_pb2.ListedGroup(
                        group_id=group_id,
                        group_type=entry.group_type,
                        state=entry.state_name,
                        protocol_type=entry.classic.protocol_type or "" if entry.classic is not None else "consumer",
                    )
                )
        return response

    async def describe(self, group_id: str) -> group_pb2.DescribeGroupsResponse:
        shard, _ = await self._shard(group_id)
        entry = shard.groups.get(group_id)
        if entry is None:
            raise RaftlogError("GROUP_ID_NOT_FOUND", f"group {group_id!r} does not exist")
        if entry.classic is not None:
            return self._describe_classic(entry.classic)
        group = entry.group
        response = group_pb2.DescribeGroupsResponse(
            group_id=group_id,
            state=group.state.value,
            group_epoch=group.group_epoch,
            assignment_epoch=group.assignment_epoch,
            assignor=group.assignor,
            coordinator_id=self.broker_id,
            group_type="consumer",
        )
        for m in sorted(group.members.values(), key=lambda m: m.member_id):
            response.members.append(
                group_pb2.DescribedMember(
                    member_id=m.member_id,
                    instance_id=m.instance_id or "",
                    client_id=m.client_id,
                    client_host=m.client_host,
                    member_epoch=m.member_epoch,
                    member_state=m.state.value,
                    subscribed_topic_names=sorted(m.subscribed_topics),
                    subscribed_regex=m.subscribed_regex or "",
                    assignment=_to_pb(m.assigned),
                    target_assignment=_to_pb(group.target.get(m.member_id, ())),
                )
            )
        return response

    async def delete_group(self, group_id: str) -> None:
        shard, partition = await self._shard(group_id)
        entry = shard.groups.get(group_id)
        if entry is None:
            raise RaftlogError("GROUP_ID_NOT_FOUND", f"group {group_id!r} does not exist")
        members = entry.classic.members if entry.classic is not None else entry.group.members
        if members:
            raise RaftlogError(
                "NON_EMPTY_GROUP", f"group {group_id!r} has active members: {', '.join(sorted(members))}"
            )
        await self._delete_group(shard, partition, group_id, entry)

    async def _delete_group(self, shard: Shard, partition: Partition, group_id: str, entry: GroupEntry) -> None:
        tombstones: list[tuple[bytes, bytes | None]] = [
            (rec.encode_offset_key(rec.OffsetKey(group_id, t, p)), None) for t, p in sorted(entry.offsets)
        ]
        tombstones.append((rec.encode_group_key(rec.GroupKey(group_id)), None))
        entry.group.deleted = True  # heartbeats arriving during the write find it gone (GROUP_ID_NOT_FOUND)
        if entry.classic is not None:
            entry.classic.mark_dead()  # requests arriving during the write: COORDINATOR_NOT_AVAILABLE
            self._deliver_classic(entry)
        try:
            await self._append(partition, tombstones)
        except RaftlogError:
            entry.group.deleted = False
            if entry.classic is not None:
                entry.classic.state = ClassicState.EMPTY
            raise
        shard.groups.pop(group_id, None)

    async def delete_offsets(self, request: group_pb2.OffsetDeleteRequest) -> group_pb2.OffsetDeleteResponse:
        shard, partition = await self._shard(request.group_id)
        entry = shard.groups.get(request.group_id)
        if entry is None:
            raise RaftlogError("GROUP_ID_NOT_FOUND", f"group {request.group_id!r} does not exist")
        if entry.classic is not None:
            # Kafka's rule for a classic group: offsets of topics its members do not subscribe to
            # go while it is Stable (consumer protocol) or Empty; while it rebalances, none do.
            if entry.classic.state not in (ClassicState.EMPTY, ClassicState.STABLE) or (
                entry.classic.state is ClassicState.STABLE and entry.classic.protocol_type != "consumer"
            ):
                raise RaftlogError("NON_EMPTY_GROUP", f"group {request.group_id!r} is {entry.classic.state.value}")
            subscribed, reason = entry.classic.subscribed_topics(), "GROUP_SUBSCRIBED_TO_TOPIC"
        else:
            subscribed, reason = entry.group.subscribed_topic_names(self.partition_counts()), "NON_EMPTY_GROUP"
        results, deletes = [], []
        for topic, index in sorted(_tps(request.partitions)):
            result = group_pb2.PartitionError(topic=topic, partition=index)
            if topic in subscribed:
                result.error_reason = reason
                result.error_message = f"group {request.group_id!r} has active members subscribed to {topic}"
            elif (topic, index) in entry.offsets:
                deletes.append((topic, index))
            results.append(result)
        if deletes:
            await self._append(
                partition, [(rec.encode_offset_key(rec.OffsetKey(request.group_id, t, p)), None) for t, p in deletes]
            )
            for tp in deletes:
                entry.offsets.pop(tp, None)
        return group_pb2.OffsetDeleteResponse(results=results)

    # -- the classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) -------------------

    def _classic_entry(self, shard: Shard, group_id: str, joining: bool) -> tuple[GroupEntry, ClassicGroup]:
        entry = shard.groups.get(group_id)
        if entry is not None and entry.classic is not None:
            return entry, entry.classic
        if not joining:
            raise RaftlogError("UNKNOWN_MEMBER_ID", f"group {group_id!r} has no classic group members")
        if entry is not None and (entry.group.members or entry.group.deleted):
            raise RaftlogError(
                "INCONSISTENT_GROUP_PROTOCOL",
                f"group {group_id!r} is a consumer group (KIP-848) with members; a classic member cannot join it",
            )
        entry = self._entry(shard, group_id)
        entry.classic = ClassicGroup(group_id, self.classic_settings)  # offsets of an empty group stay
        return entry, entry.classic

    async def join_classic(self, group_id: str, request: JoinRequest) -> JoinAnswer:
        shard, partition = await self._shard(group_id)
        entry, group = self._classic_entry(shard, group_id, joining=True)
        answer = group.join(request, _monotonic_ms())
        if not isinstance(answer, Held):
            await self._settle_classic(partition, entry)  # a static member's new id is written first
            return answer
        waiter = self._hold(entry.join_waiters, answer.member_id)
        await self._settle_held(partition, entry, waiter)
        return await self._await_held(waiter, request.rebalance_timeout_ms, f"JoinGroup of {answer.member_id}")

    async def sync_classic(
        self,
        group_id: str,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> SyncAnswer:
        shard, partition = await self._shard(group_id)
        entry, group = self._classic_entry(shard, group_id, joining=False)
        answer = group.sync(
            member_id, instance_id, generation, protocol_type, protocol_name, assignments, _monotonic_ms()
        )
        if answer is not None:
            return answer
        waiter = self._hold(entry.sync_waiters, member_id)
        await self._settle_held(partition, entry, waiter)
        timeout_ms = group.members[member_id].rebalance_timeout_ms if member_id in group.members else 0
        return await self._await_held(waiter, timeout_ms, f"SyncGroup of {member_id}")

    async def heartbeat_classic(self, group_id: str, member_id: str, instance_id: str | None, generation: int) -> None:
        shard, _ = await self._shard(group_id)
        _, group = self._classic_entry(shard, group_id, joining=False)
        group.heartbeat(member_id, instance_id, generation, _monotonic_ms())

    async def leave_classic(self, group_id: str, members: list[tuple[str, str | None]]) -> list[LeaveAnswer]:
        shard, partition = await self._shard(group_id)
        _, group = self._classic_entry(shard, group_id, joining=False)
        answers = group.leave(members, _monotonic_ms())
        entry = shard.groups[group_id]
        await self._settle_classic(partition, entry)
        return answers

    async def classic_group(self, group_id: str) -> tuple[GroupEntry | None, int]:
        """The group's entry (None: no such group) and this coordinator's id, for DescribeGroups."""
        shard, _ = await self._shard(group_id)
        return shard.groups.get(group_id), self.broker_id

    @staticmethod
    def _hold(waiters: dict[str, list[asyncio.Future]], member_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        waiters.setdefault(member_id, []).append(future)
        return future

    @staticmethod
    async def _await_held(future: asyncio.Future, timeout_ms: int, what: str):
        """A held request's answer. The barrier's own timeout answers it; this bound is only for
        a request whose group went away some other way."""
        try:
            return await asyncio.wait_for(future, timeout_ms / 1000 + CLASSIC_WAIT_MARGIN_S)
        except TimeoutError:
            raise RaftlogError("REBALANCE_IN_PROGRESS", f"{what} was held past its rebalance timeout") from None

    async def _settle_held(self, partition: Partition, entry: GroupEntry, waiter: asyncio.Future) -> None:
        """_settle_classic for a request that waits on `waiter`: if the write fails, the request
        answers with that error and its waiter is let go."""
        try:
            await self._settle_classic(partition, entry)
        except BaseException:
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                waiter.exception()  # retrieved: the request answers with the write's error instead
            raise

    async def _settle_classic(self, partition: Partition, entry: GroupEntry) -> None:
        """Writes the group's settled state if it moved, then answers the held requests it let go
        (a SyncGroup's assignment goes out only once it is committed)."""
        assert entry.classic is not None, f"group {entry.group.group_id} is not classic"
        try:
            await self._persist_group(partition, entry)
        except RaftlogError as exc:
            entry.classic.write_failed(_monotonic_ms(), f"writing the group failed: {exc.message}")
            self._deliver_classic(entry, exc)
            raise
        self._deliver_classic(entry)

    @staticmethod
    def _deliver_classic(entry: GroupEntry, failure: RaftlogError | None = None) -> None:
        """Hands held requests their answers; with `failure`, held SyncGroups get it instead
        (their assignment was not committed)."""
        assert entry.classic is not None
        joins, syncs = entry.classic.take_answers()
        for waiters, answers, fail in ((entry.join_waiters, joins, None), (entry.sync_waiters, syncs, failure)):
            for member_id, answer in answers:
                for future in waiters.pop(member_id, []):
                    if future.done():
                        continue
                    if fail is not None and not answer.error:
                        future.set_exception(fail)
                    else:
                        future.set_result(answer)

    def _describe_classic(self, group: ClassicGroup) -> group_pb2.DescribeGroupsResponse:
        response = group_pb2.DescribeGroupsResponse(
            group_id=group.group_id,
            state=group.state.value,
            group_epoch=group.generation,
            assignment_epoch=group.generation,
            assignor=group.protocol_name or "",
            coordinator_id=self.broker_id,
            group_type="classic",
        )
        consumer = group.protocol_type == "consumer"
        for m in sorted(group.members.values(), key=lambda m: m.member_id):
            assigned = rec.consumer_protocol_partitions(m.assignment) if consumer else ()
            response.members.append(
                group_pb2.DescribedMember(
                    member_id=m.member_id,
                    instance_id=m.instance_id or "",
                    client_id=m.client_id,
                    client_host=m.client_host,
                    member_epoch=group.generation,
                    member_state="stable" if group.state is ClassicState.STABLE else "rebalancing",
                    subscribed_topic_names=sorted(rec.consumer_protocol_topics(m.metadata(group.protocol_name)))
                    if consumer
                    else [],
                    assignment=_to_pb(assigned),
                    target_assignment=_to_pb(assigned),
                )
            )
        return response

    # -- metrics ------------------------------------------------------------------------------

    def group_metrics(self) -> list[tuple[str, str, int, list[tuple[str, int, int, float]]]]:
        """(group, state, members, [(topic, partition, lag records, lag seconds)]) of the groups
        this broker coordinates now, lag from the replicas it hosts."""
        hosted = {(p.topic, p.index): p for p in list(self._replicas.partitions.values()) if p.info is not None}
        now_ms = _wall_ms()
        result = []
        for shard, _ in self._live_shards():
            for group_id, entry in list(shard.groups.items()):
                lags = []
                for (topic, index), value in sorted(entry.offsets.items()):
                    partition = hosted.get((topic, index))
                    if partition is None:
                        continue
                    records = max(0, partition.high_watermark - value.offset)
                    seconds = 0.0
                    if records:
                        timestamp = self._timestamp_at(partition, value.offset)
                        seconds = max(0.0, (now_ms - timestamp) / 1000.0) if timestamp is not None else 0.0
                    lags.append((topic, index, records, seconds))
                result.append((group_id, entry.state_name, entry.member_count, lags))
        return result

    def _timestamp_at(self, partition: Partition, offset: int) -> int | None:
        try:
            for _, _, _, timestamp in self._read_timestamps(partition, offset):
                return timestamp
        except RaftlogError:
            return None
        return None

    @staticmethod
    def _read_timestamps(partition: Partition, offset: int):
        data = partition.log.read(
            max(offset, partition.log.log_start_offset), 64 * 1024, max_offset=partition.high_watermark
        )
        for _, records in iter_batches(data):
            for record in records:
                if record.offset >= offset:
                    yield record.offset, record.key, record.value, record.timestamp
