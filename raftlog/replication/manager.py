"""ReplicaManager: the partitions this broker hosts, kept in step with the metadata image.

- After metadata changes it reconciles: opens logs for new replicas, makes each partition
  leader or follower in its current epoch, and deletes the data of partitions that left
  this broker (topic deletion, reassignment).
- It serves produce, consumer fetch and replica fetch against the partitions.
- A periodic task asks the controller for ISR changes the leaders want (AlterPartition).
- Followers fetch through one ReplicaFetcher task per leader broker (fetcher.py).
- Corrupt data (a CRC that fails on a verified read, in the scrubber, or data recovery had
  to cut below the recovery point): a follower cuts its log before the bad batch and fetches
  it again; a leader first hands its leadership over (reported offline like a failed log),
  then does the same. Until it has caught up it is reported, so it leaves the ISR. The
  scrubber checks sealed segments at `log.scrub.bytes.per.second`.
- Storage failures (Kafka's failed log dirs): a failed write or fsync in any log takes its
  whole log dir offline on this broker until restart. Its partitions stop being served here
  (KAFKA_STORAGE_ERROR), are no longer fetched, and are reported in every heartbeat
  (`offline_replicas`); the controller moves their leadership inside the ISR and takes this
  replica out of the ISR. A log that cannot be opened is reported the same way and does not
  keep the other partitions from being hosted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from raftlog import config as node_config
from raftlog import gc_policy
from raftlog.broker.controller_channel import ControllerChannel
from raftlog.channels import Peers
from raftlog.errors import RaftlogError
from raftlog.limits import (
    ALTER_PARTITION_MAX_IN_FLIGHT,
    FETCH_SESSION_REFRESH_S,
    LOG_FILES_BATCH_PARTITIONS,
    RECONCILE_CHUNK_PARTITIONS,
    RECONCILE_LOG_OPEN_SHARE,
    YIELD_EVERY_PARTITIONS,
)
from raftlog.log import LogConfig, TopicSettings
from raftlog.log.errors import CorruptLogError, LogError
from raftlog.log.partition_log import CorruptionCounter
from raftlog.log.scrubber import ScrubCursor
from raftlog.metadata.image import NO_LEADER, MetadataImage, PartitionInfo
from raftlog.replication import throttle as throttle_rules
from raftlog.replication.fetcher import ReplicaFetcher
from raftlog.replication.log_adapter import ReplicaLog
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition
from raftlog.tasks import TaskSupervisor
from raftlog.topic_config import effective_topic_config
from raftlog.v1 import controller_pb2

log = logging.getLogger(__name__)

ISR_CHECK_INTERVAL_S = 0.1
ISR_SWEEP_INTERVAL_S = 1.0  # every leader is checked this often (or at a quarter of replica.lag.time.max.ms)
MAINTENANCE_INTERVAL_S = 5.0
SCRUB_STEP_BYTES_MAX = 1 << 20  # one scrubbing step reads at most this much (then sleeps for the rate)
SCRUB_IDLE_S = 1.0  # a pass that found nothing sealed to check waits this long before the next


@dataclass
class Repair:
    """A replica whose log holds (or held) corrupt data: cut at `offset` and fetched again.

    handing_over: it led the partition when the corruption was found; it serves nothing and
    waits, reported offline, until the controller has moved the leadership, then cuts its log
    and follows. reported: listed in heartbeats until it is out of the ISR (it must not count
    for the ISR, nor lead, before it has caught up again; the leader re-adds it then)."""

    offset: int
    reason: str
    handing_over: Partition | None = None
    reported: bool = True


@dataclass(slots=True)
class FetchSessionEntry:
    """A partition a follower's fetch found with nothing to send (replication/requests.py): left
    out of its later answers while its version, the fetch's position and epochs stay the same,
    until read_at is FETCH_SESSION_REFRESH_S old."""

    partition: Partition
    version: int
    asked: tuple[int, int, int]  # fetch offset, last fetched epoch, current leader epoch
    read_at: float  # monotonic s


@dataclass(slots=True)
class FetchSession:
    """What this broker, as leader, keeps of one follower incarnation's fetches.

    entries: the partitions whose last answer was empty (FetchSessionEntry), left out of later
    answers. named: partition -> the leader epoch the follower last named it with. A partition led
    here that the follower replicates but has not named in this leadership (just created, or led
    here anew) is news its waiting fetches do not ask for: its idle fetch is answered early, so
    the follower's next request names it (replication/requests.py)."""

    broker_epoch: int
    entries: dict[tuple[bytes, int], FetchSessionEntry] = field(default_factory=dict)
    named: dict[tuple[bytes, int], int] = field(default_factory=dict)


# Records after which every hosted partition is looked at again (a removed topic's partitions, a
# broker gone), not only the partitions the records name. A config record does it when it sets a
# broker default (every topic's settings may follow it); a topic's own config only makes that
# topic's partitions looked at again (_topics_configured).
FULL_RECONCILE_RECORD_KINDS = frozenset({"remove_topic", "unregister_broker"})


def _partitions_named(batch) -> list[tuple[bytes, int]]:
    """(topic id, partition) of each partition or partition-change record of a metadata batch."""
    named = []
    for record in batch.records:
        kind = record.WhichOneof("record")
        if kind == "partition":
            named.append((record.partition.topic_id, record.partition.partition))
        elif kind == "partition_change":
            named.append((record.partition_change.topic_id, record.partition_change.partition))
    return named


def _topics_configured(batch) -> tuple[set[str], bool]:
    """(names of the topics whose own configs the batch sets, whether it sets a broker config)."""
    topics: set[str] = set()
    brokers = False
    for record in batch.records:
        if record.WhichOneof("record") == "config":
            if record.config.resource_type == "topics":
                topics.add(record.config.resource_name)
            else:
                brokers = True
    return topics, brokers


PARTITION_RECORD_KINDS = frozenset(
    {
        "topic",
        "remove_topic",
        "partition",
        "partition_change",
        "broker_fencing",
        "register_broker",
        "config",
        "unregister_broker",
    }
)


def reconcile_scope(batch) -> tuple[bool, frozenset[tuple[bytes, int]], frozenset[str]] | None:
    """What an applied metadata batch (None: a snapshot restored) makes the next reconcile look at:
    None for nothing, else (every partition, the partitions it names, the topics whose own configs
    it sets). A snapshot, a removed topic, a broker gone or a broker config make it whole."""
    if batch is None:
        return True, frozenset(), frozenset()
    kinds = {record.WhichOneof("record") for record in batch.records}
    if not kinds & PARTITION_RECORD_KINDS:
        return None
    topics, broker_config = _topics_configured(batch)
    whole = broker_config or bool(FULL_RECONCILE_RECORD_KINDS & kinds)
    return whole, frozenset(_partitions_named(batch)), frozenset(topics)


T = TypeVar("T")
LogFactory = Callable[[str, int, LogConfig], ReplicaLog]  # (topic, partition, the topic's log config) -> log


class _LogOpeningPacer:
    """Runs a reconciliation's log opening on a worker thread, a batch at a time, and pauses
    before the next batch so that opening takes RECONCILE_LOG_OPEN_SHARE of the time: it is CPU
    bound (about half a millisecond a log), and run flat out on every node at once it took the
    machine's cores from the requests the nodes serve meanwhile (an acks=all produce to another
    topic: p50 162 ms while 10,000 partitions were created, 17-25 ms paced). Nothing waits after
    the last batch. Deleting is not paced: it waits on the disk more than on the CPU, and paced
    the same way the deletion of 10,000 partitions took 36-99 s instead of 13."""

    def __init__(self) -> None:
        self._owed_s = 0.0

    async def run(self, function: Callable[..., T], *args) -> T:
        if self._owed_s > 0:
            await asyncio.sleep(self._owed_s)
        started = time.monotonic()
        result = await asyncio.to_thread(function, *args)
        self._owed_s = (time.monotonic() - started) * (1.0 - RECONCILE_LOG_OPEN_SHARE) / RECONCILE_LOG_OPEN_SHARE
        return result


def _chunks(items: list, size: int = RECONCILE_CHUNK_PARTITIONS) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _delete_logs(partitions: list[Partition]) -> None:
    """On a worker thread: the data of partitions no longer hosted here."""
    for partition in partitions:
        log.info("%s: no longer hosted here; deleting its data", partition.name)
        try:
            partition.log.delete()
        except OSError as exc:  # the other partitions are still reconciled; the files stay as strays
            log.error("%s: deleting its data failed: %s", partition.name, exc)


class ReplicaManager:
    def __init__(
        self,
        broker_id: int,
        cluster_id: str,
        config: node_config.NodeConfig,
        state_machine,
        peers: Peers,
        controller: ControllerChannel,
        broker_epoch: Callable[[], int | None],
        log_factory: LogFactory,
        tasks: TaskSupervisor,
        metrics=None,
        time_retention_allowed: Callable[[], bool] = lambda: True,
    ):
        self.broker_id = broker_id
        self.supervisor = tasks
        self.cluster_id = cluster_id
        self.config = config
        self._state_machine = state_machine
        self._peers = peers
        self._broker_epoch = broker_epoch
        self._controller = controller
        self._log_factory = log_factory
        self.metrics = metrics
        self._time_retention_allowed = time_retention_allowed  # False while our wall clock is not trusted
        self.partitions: dict[tuple[bytes, int], Partition] = {}
        # Replicas this broker hosts but cannot serve: (topic id, partition) -> why. Reported to
        # the controller in every heartbeat; cleared only by a restart.
        self._offline: dict[tuple[bytes, int], str] = {}
        self.offline_log_dirs: set[Path] = set()
        self._repairs: dict[tuple[bytes, int], Repair] = {}
        self.on_offline_change: Callable[[], None] = lambda: None  # the node: heartbeat now
        self._topic_settings: dict[str, TopicSettings] = {}
        self.throttles = throttle_rules.ReplicationThrottles(broker_id)  # replication quotas (replication/throttle.py)
        self._replica_lag_time_max_ms: int | None = None  # the dynamic broker value, or the static one
        self._fetchers: dict[int, ReplicaFetcher] = {}
        # Followers' fetch sessions, as leader: replica id -> the session of its current incarnation.
        self._fetch_sessions: dict[int, FetchSession] = {}
        self._dirty = asyncio.Event()
        # AlterPartition calls in flight to the controller: after a broker comes back, thousands of
        # leaders want it back in their ISR at once; unbounded, those calls swamped the controller
        # (timeouts, retries, missed heartbeats, more fencing).
        self._alter_partition_slots = asyncio.Semaphore(ALTER_PARTITION_MAX_IN_FLIGHT)
        self._reconcile_whole = True  # the next reconcile looks at every partition (see reconcile)
        self._changed_partitions: set[tuple[bytes, int]] = set()  # named by records since the last one
        self._configured_topics: set[str] = set()  # whose own configs records set since the last one
        self.changed = ChangeNotifier()  # notified on any partition's log end, high watermark or role
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def image(self) -> MetadataImage:
        return self._state_machine.image

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._state_machine.add_listener(self._on_metadata_batch)
        self._dirty.set()
        self._tasks = [
            self.supervisor.spawn(self._reconcile_loop(), name="replica-reconcile", critical=True),
            self.supervisor.spawn(self._isr_loop(), name="replica-isr", critical=True),
            self.supervisor.spawn(self._maintenance_loop(), name="log-maintenance", critical=True),
            self.supervisor.spawn(self._scrub_loop(), name="log-scrubber", critical=True),
        ]

    async def stop(self) -> None:
        # Out of service first: requests that arrive during shutdown get NOT_LEADER_OR_FOLLOWER
        # (clients move on) instead of meeting a closed log.
        closing, self.partitions = list(self.partitions.values()), {}
        closing += [repair.handing_over for repair in self._repairs.values() if repair.handing_over is not None]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fetcher in self._fetchers.values():
            await fetcher.stop()
        for partition in closing:
            try:
                partition.log.close()  # shutdown: these fsyncs may block the loop
            except Exception:  # noqa: BLE001 - one log that cannot be flushed must not keep the others open
                log.exception("%s: closing its log failed", partition.name)

    def _on_metadata_batch(self, offset: int, batch) -> None:
        scope = reconcile_scope(batch)
        if scope is not None:
            assert self._loop is not None, "metadata listener registered before start()"
            self._loop.call_soon_threadsafe(self._mark_dirty, *scope)

    def _mark_dirty(self, whole: bool, changed: frozenset[tuple[bytes, int]], topics: frozenset[str]) -> None:
        self._reconcile_whole = self._reconcile_whole or whole
        if not self._reconcile_whole:
            self._changed_partitions |= changed
            self._configured_topics |= topics
        self._dirty.set()

    async def _reconcile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._topic_settings.clear()
            self._replica_lag_time_max_ms = None
            whole, self._reconcile_whole = self._reconcile_whole, False
            changed, self._changed_partitions = self._changed_partitions, set()
            topics, self._configured_topics = self._configured_topics, set()
            try:
                opened, removed = await self.reconcile(whole, changed, topics)
            except Exception as exc:  # noqa: BLE001 - keep serving; the next change retries
                self._reconcile_whole = True  # whatever it did not get to
                self.supervisor.survived("replica-reconcile", exc)
            else:
                gc_policy.partitions_changed(opened, removed)

    # -- metadata -> partitions -------------------------------------------------------------

    def topic_settings(self, topic: str) -> TopicSettings:
        """The settings in force for a topic, typed; cached until the next metadata change."""
        cached = self._topic_settings.get(topic)
        if cached is None:
            broker_values = {**self.config.values, **self.image.dynamic_config("brokers", "")}
            effective = effective_topic_config(self.image.dynamic_config("topics", topic), broker_values)
            configs = {name: value for name, (value, _) in effective.items()}
            cached = self._topic_settings[topic] = TopicSettings.from_topic_configs(configs)
        return cached

    async def reconcile(
        self,
        whole: bool = True,
        changed: AbstractSet[tuple[bytes, int]] = frozenset(),
        configured_topics: AbstractSet[str] = frozenset(),
    ) -> tuple[int, int]:
        """Brings the hosted partitions in line with the image. Logs are opened and deleted on a
        worker thread, LOG_FILES_BATCH_PARTITIONS at a time (opening a new one is a few files, no fsync),
        and made leader or follower RECONCILE_CHUNK_PARTITIONS at a time between turns of the loop:
        a topic of thousands of partitions created or deleted must not stop heartbeats and
        requests meanwhile. What it applies is the image as of the start; a change meanwhile sets
        off another round. Not whole: only the `changed` partitions (named by the records since the
        last round) are looked at, and of those only the ones whose PartitionInfo is not the one
        applied last time (the image replaces a partition's info on every change), so a metadata
        change costs work for what it changed, not for every partition hosted here; the partitions
        of `configured_topics` (whose own configs changed) are reconfigured and applied again
        whatever their PartitionInfo. Returns how many partitions it opened and how many it
        removed."""
        wanted: dict[tuple[bytes, int], tuple[str, PartitionInfo]] = {}
        if whole:
            for topic_name, info in self.image.partitions():
                if self.broker_id in info.replicas:
                    wanted[(info.topic_id, info.partition)] = (topic_name, info)
            leaving = [key for key in self.partitions if key not in wanted]
        else:
            leaving = []
            for key in changed:
                hosted = self._hosted_info(key)
                if hosted is not None:
                    wanted[key] = hosted
                elif key in self.partitions:
                    leaving.append(key)
            for topic_name in configured_topics:
                topic = self.image.topic(topic_name)
                for info in topic.partitions.values() if topic is not None else ():
                    if self.broker_id in info.replicas:
                        wanted[(info.topic_id, info.partition)] = (topic_name, info)
        removed_count = opened_count = 0
        opening = _LogOpeningPacer()
        for chunk in _chunks(leaving, LOG_FILES_BATCH_PARTITIONS):
            removed = []
            for index, key in enumerate(chunk):
                if index and index % RECONCILE_CHUNK_PARTITIONS == 0:
                    await asyncio.sleep(0)
                if key in self.partitions:
                    removed.append(self._take_out(key))
            await asyncio.to_thread(_delete_logs, removed)
            removed_count += len(removed)
        for key in [k for k in self._offline if k not in wanted] if whole else []:
            del self._offline[key]  # no longer ours: nothing to report (its data waits for a restart)
        self._progress_repairs()
        new: list[tuple[tuple[bytes, int], str, PartitionInfo]] = []
        for index, (key, (topic_name, info)) in enumerate(wanted.items()):
            if index % RECONCILE_CHUNK_PARTITIONS == RECONCILE_CHUNK_PARTITIONS - 1:
                await asyncio.sleep(0)
            if key in self._offline or self._handing_over(key):
                continue
            partition = self.partitions.get(key)
            if partition is None:
                new.append((key, topic_name, info))
            elif whole or partition.info is not info or topic_name in configured_topics:
                partition.log.reconfigure(self.topic_settings(topic_name).log)  # a config altered since
                self._apply(partition, info)
        for chunk in _chunks(new, LOG_FILES_BATCH_PARTITIONS):
            specs = [(topic_name, info, self.topic_settings(topic_name).log) for _, topic_name, info in chunk]
            opened = await opening.run(self._open_logs, specs)
            for index, ((key, topic_name, info), replica_log) in enumerate(zip(chunk, opened)):
                if index and index % RECONCILE_CHUNK_PARTITIONS == 0:
                    await asyncio.sleep(0)  # becoming leader or follower: a chunk at a time
                if isinstance(replica_log, Exception):  # this replica only is offline, never the broker
                    log.error(
                        "%s-%d: cannot open its log, not served here until restart: %s",
                        topic_name,
                        info.partition,
                        replica_log,
                    )
                    self._offline[key] = f"cannot open the log: {replica_log}"
                    self.on_offline_change()
                    continue
                self._apply(self._adopt(key, topic_name, info, replica_log), info)
                opened_count += 1
        return opened_count, removed_count

    def _hosted_info(self, key: tuple[bytes, int]) -> tuple[str, PartitionInfo] | None:
        """(topic name, info) of a partition in the image with a replica here, else None."""
        topic = self.image.topics_by_id.get(key[0])
        if topic is None:
            return None
        info = topic.partitions.get(key[1])
        if info is None or self.broker_id not in info.replicas:
            return None
        return topic.name, info

    def _open_logs(self, specs: list[tuple[str, PartitionInfo, LogConfig]]) -> list[ReplicaLog | Exception]:
        """On a worker thread (recovery and checkpoint fsyncs): new partitions' logs, files only
        (nothing shared is touched); a log that cannot be opened is returned as its error."""
        opened: list[ReplicaLog | Exception] = []
        for topic_name, info, log_config in specs:
            try:
                opened.append(self._log_factory(topic_name, info.partition, log_config))
            except Exception as exc:  # noqa: BLE001 - any failure to open: reported by the caller
                opened.append(exc)
        return opened

    def _adopt(
        self, key: tuple[bytes, int], topic_name: str, info: PartitionInfo, replica_log: ReplicaLog
    ) -> Partition:
        """Serves a newly opened log: failure and corruption listeners, and a repair if recovery cut
        data that was durable."""
        loop = asyncio.get_running_loop()

        def failed(error: LogError) -> None:  # may be called on a flush thread
            loop.call_soon_threadsafe(self.log_dir_failed, replica_log.log_dir, error.message)

        def corrupt(error: CorruptLogError) -> None:
            loop.call_soon(self.corruption_found, key, error.offset, error.message)

        replica_log.set_failure_listener(failed)
        replica_log.set_corruption_listener(corrupt)
        try:
            partition = Partition(topic_name, info.topic_id, info.partition, self.broker_id, replica_log, self.changed)
        except CorruptLogError as exc:  # rot the producer-state rebuild ran into: cut there, fetch again
            log.error("%s-%d: %s; cutting the log at offset %d", topic_name, info.partition, exc.message, exc.offset)
            replica_log.cut_at_corruption(exc.offset)
            partition = Partition(topic_name, info.topic_id, info.partition, self.broker_id, replica_log, self.changed)
        self.partitions[key] = partition
        lost_at = replica_log.durable_data_lost_at
        if lost_at is not None:  # already cut by recovery: it must catch up before it counts again
            self._repairs[key] = Repair(lost_at, "recovery cut data that was fsynced (corruption)")
        return partition

    # -- storage failures -------------------------------------------------------------------

    def offline_replicas(self) -> list[tuple[bytes, int]]:
        """(topic id, partition) of the replicas hosted here that cannot be served or must not
        count for the ISR yet (heartbeat)."""
        try:
            self._progress_repairs()
        except Exception as exc:  # noqa: BLE001 - the heartbeat must go out; the next one retries
            self.supervisor.survived("replica-repairs", exc)
        return list(self._offline) + [key for key, repair in self._repairs.items() if repair.reported]

    # -- corrupt data -----------------------------------------------------------------------

    def corruption_found(self, key: tuple[bytes, int], offset: int, reason: str) -> None:
        """This replica holds a corrupt batch at offset: a follower cuts its log there now and
        fetches again; a leader hands its leadership over first."""
        partition = self.partitions.get(key)
        if partition is None:
            return
        if partition.is_leader and partition.isr == (self.broker_id,):
            # No in-sync replica to take over or to repair from: cutting the log would drop every
            # acknowledged record after the bad batch. It goes on leading; only reads of that batch
            # fail (verified reads), as they would in Kafka, and the error is logged for an operator.
            log.error(
                "%s: corrupt data at offset %d (%s) and no other in-sync replica: left as it is",
                partition.name,
                offset,
                reason,
            )
            return
        log.error("%s: corrupt data at offset %d (%s); repairing from the leader", partition.name, offset, reason)
        if partition.is_leader:
            self.partitions.pop(key)
            self._unfollow(partition)
            partition.info = None  # serves nothing; waiters see it is gone
            partition.notify_changed()
            self._repairs[key] = Repair(offset, reason, handing_over=partition)
            self.on_offline_change()
            return
        previous = self._repairs.get(key)
        partition.truncate_before_corruption(offset)
        self._repairs[key] = Repair(min(offset, previous.offset) if previous else offset, reason)
        self.on_offline_change()

    def _handing_over(self, key: tuple[bytes, int]) -> bool:
        repair = self._repairs.get(key)
        return repair is not None and repair.handing_over is not None

    def _partition_info(self, key: tuple[bytes, int]) -> PartitionInfo | None:
        topic_id, index = key
        for _, info in self.image.partitions():
            if info.topic_id == topic_id and info.partition == index:
                return info
        return None

    def _progress_repairs(self) -> None:
        """Moves each repair on as the metadata allows (see Repair)."""
        for key, repair in list(self._repairs.items()):
            info = self._partition_info(key)
            if info is None or self.broker_id not in info.replicas:
                del self._repairs[key]  # no longer ours
                if repair.handing_over is not None:  # not in self.partitions: reconcile never saw it
                    _delete_logs([repair.handing_over])
                continue
            partition = repair.handing_over
            if partition is not None:
                if info.leader == self.broker_id or info.leader == NO_LEADER and self.broker_id in info.isr:
                    continue  # still ours to lead (or nobody else can): wait, reported
                repair.handing_over = None
                self.partitions[key] = partition
                partition.truncate_before_corruption(repair.offset)
                self._apply(partition, info)  # a follower of the new leader: fetches what was cut
                continue
            partition = self.partitions.get(key)
            if partition is None or partition.is_leader:  # a leader: the last in-sync replica, nothing to fetch from
                del self._repairs[key]
                continue
            if repair.reported and (self.broker_id not in info.isr or info.isr == (self.broker_id,)):
                repair.reported = False  # out of the ISR: the leader's join rule takes over
            if not repair.reported and partition.log.log_end_offset > repair.offset:
                CorruptionCounter.repaired += 1
                log.info("%s: repaired: fetched past offset %d again", partition.name, repair.offset)
                del self._repairs[key]

    async def _scrub_loop(self) -> None:
        """Checks the CRC of every sealed segment, partition after partition, at the configured rate."""
        rate = int(self.config["log.scrub.bytes.per.second"])
        if rate <= 0:  # scrubbing is off; the task stays (ending a critical task stops the node)
            await asyncio.Event().wait()
        step_bytes = min(SCRUB_STEP_BYTES_MAX, rate)
        cursors: dict[tuple[bytes, int], ScrubCursor] = {}
        while True:
            checked = 0
            for index, (key, partition) in enumerate(list(self.partitions.items())):
                if self.partitions.get(key) is not partition:
                    continue
                if not partition.log.has_sealed_segments:
                    # Nothing to check (most idle partitions): no coroutine, and a yield now and
                    # then; a pass over 10,000 such logs was a tenth of an idle node's CPU.
                    if index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
                        await asyncio.sleep(0)
                    continue
                try:
                    step = await partition.log.scrub(cursors.get(key, ScrubCursor()), step_bytes)
                except Exception as exc:  # noqa: BLE001 - one unreadable log must not stop the scrubbing of the others
                    self.supervisor.survived("log-scrubber", exc)
                    continue
                cursors[key] = step.next_cursor
                checked += step.bytes_checked
                if step.corrupt_offset is not None and self.partitions.get(key) is partition:
                    try:
                        self.corruption_found(key, step.corrupt_offset, f"scrubber: {step.detail}")
                    except Exception as exc:  # noqa: BLE001 - e.g. its log dir failed meanwhile
                        self.supervisor.survived("log-scrubber", exc)
                if step.bytes_checked:
                    await asyncio.sleep(step.bytes_checked / rate)
                elif index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
                    await asyncio.sleep(0)  # a pass over thousands of idle logs yields now and then
            for key in [k for k in cursors if k not in self.partitions]:
                del cursors[key]
            if checked == 0:
                await asyncio.sleep(SCRUB_IDLE_S)

    def log_dir_failed(self, log_dir: Path | None, reason: str) -> None:
        """A write or fsync in log_dir failed: every log in it goes out of service (Kafka's
        LogDirFailureChannel); no write reaches that dir again until restart."""
        if log_dir is None or log_dir in self.offline_log_dirs:
            return
        self.offline_log_dirs.add(log_dir)
        log.error("log dir %s is offline until restart (%s); its partitions are no longer served here", log_dir, reason)
        for key, partition in list(self.partitions.items()):
            if partition.log.log_dir == log_dir:
                self.take_offline(key, f"log dir {log_dir} is offline: {reason}")
        self.on_offline_change()
        for key, repair in list(self._repairs.items()):
            if repair.handing_over is not None and repair.handing_over.log.log_dir == log_dir:
                self.partitions[key] = repair.handing_over  # taken offline from where it is, for good
                del self._repairs[key]
                self.take_offline(key, f"log dir {log_dir} is offline: {reason}")

    def take_offline(self, key: tuple[bytes, int], reason: str) -> None:
        """Stops serving and fetching a replica; the next heartbeat reports it to the controller."""
        partition = self.partitions.pop(key)
        self._offline[key] = reason
        self._unfollow(partition)
        self._forget_in_sessions(key)
        partition.info = None  # waiters (acks=all, long polls) see it is gone
        partition.log.take_offline(reason)
        partition.notify_changed()
        try:
            partition.log.close()  # a log out of service only releases its files
        except Exception:  # noqa: BLE001 - it is out of service either way
            log.exception("%s: closing its offline log failed", partition.name)

    def _check_online(self, key: tuple[bytes, int], name: str) -> None:
        reason = self._offline.get(key)
        if reason is None and self._handing_over(key):
            reason = f"corrupt data, handing leadership over: {self._repairs[key].reason}"
        if reason is not None:
            raise RaftlogError("KAFKA_STORAGE_ERROR", f"broker {self.broker_id} cannot serve {name}: {reason}")

    def _apply(self, partition: Partition, info: PartitionInfo) -> None:
        key = (partition.topic_id, partition.index)
        if info.leader == self.broker_id and key in self._repairs and info.isr != (self.broker_id,):
            # Elected while its log is being repaired (e.g. just after a restart whose recovery
            # cut data): it must not lead; it hands over like a leader that finds corruption.
            partition.info = None
            self.partitions.pop(key, None)
            self._unfollow(partition)
            self._repairs[key].handing_over = partition
            self._repairs[key].reported = True
            self.on_offline_change()
            return
        role = partition.apply_metadata(info)
        if role == "leader":
            self._unfollow(partition)
            partition.become_leader()
        elif role == "follower":
            self._unfollow(partition)
            partition.become_follower()
            if info.leader >= 0:
                self._fetcher_for(info.leader).add(partition)
        partition.notify_changed()

    def _fetcher_for(self, leader_id: int) -> ReplicaFetcher:
        if leader_id not in self._fetchers:
            fetcher = ReplicaFetcher(
                self,
                leader_id,
                self._peers,
                self.config["replica.fetch.wait.max.ms"],
                self.config["replica.fetch.max.bytes"],
            )
            fetcher.start()
            self._fetchers[leader_id] = fetcher
        return self._fetchers[leader_id]

    def _unfollow(self, partition: Partition) -> None:
        for fetcher in self._fetchers.values():
            fetcher.remove(partition)

    def _take_out(self, key: tuple[bytes, int]) -> Partition:
        """Out of service (no fetcher, no requests) before its data is deleted."""
        partition = self.partitions.pop(key)
        self._unfollow(partition)
        self._forget_in_sessions(key)
        partition.info = None
        partition.notify_changed()
        return partition

    # -- lookups ----------------------------------------------------------------------------

    def partition_by_name(self, topic: str, index: int) -> Partition:
        topic_info = self.image.topic(topic)
        if topic_info is None or index not in topic_info.partitions:
            raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic}-{index} does not exist")
        self._check_online((topic_info.topic_id, index), f"{topic}-{index}")
        partition = self.partitions.get((topic_info.topic_id, index))
        if partition is None or partition.info is None:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {self.broker_id} has no replica of {topic}-{index}")
        return partition

    def partition_by_id(self, topic_id: bytes, index: int) -> Partition:
        self._check_online((topic_id, index), "that partition")
        partition = self.partitions.get((topic_id, index))
        if partition is None or partition.info is None:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {self.broker_id} has no replica of that partition")
        return partition

    def fetch_session(self, replica_id: int, broker_epoch: int) -> FetchSession:
        """The fetch session of a follower's current incarnation (a new one starts empty)."""
        session = self._fetch_sessions.get(replica_id)
        if session is None or session.broker_epoch != broker_epoch:
            session = self._fetch_sessions[replica_id] = FetchSession(broker_epoch)
        return session

    def fetch_session_refresh_s(self) -> float:
        """How long a session leaves a partition out at most: well inside replica.lag.time.max.ms,
        since only a read of it records the follower's fetch (which keeps it in the ISR)."""
        return min(FETCH_SESSION_REFRESH_S, self.replica_lag_time_max_ms() / 4000.0)

    def _forget_in_sessions(self, key: tuple[bytes, int]) -> None:
        for session in self._fetch_sessions.values():
            session.entries.pop(key, None)
            session.named.pop(key, None)

    def check_replica_epoch(self, replica_id: int, broker_epoch: int) -> None:
        """A replica fetch counts (high watermark, ISR) only from the follower's current
        incarnation, as registered in our metadata image (KIP-903): an earlier incarnation's
        fetch, or one from anyone merely claiming the id, says nothing about its log today."""
        broker = self.image.brokers.get(replica_id)
        if broker is None or broker.epoch != broker_epoch:
            registered = "not registered" if broker is None else f"registered with epoch {broker.epoch}"
            raise RaftlogError(
                "STALE_BROKER_EPOCH",
                f"replica fetch from broker {replica_id} with epoch {broker_epoch}; it is {registered}",
            )

    # -- retention and compaction -----------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            for partition in list(self.partitions.values()):
                try:
                    await self.maintain(partition)
                except Exception as exc:  # noqa: BLE001 - one bad log must not stop the others
                    log.error("%s: retention/compaction failed", partition.name)
                    self.supervisor.survived("log-maintenance", exc)
                await asyncio.sleep(0)

    async def maintain(self, partition: Partition) -> None:
        """Retention is the leader's decision alone (its wall clock, and only while that agrees
        with the controller's); followers drop what the leader dropped (the log start offset in
        every fetch answer), so one node with a wrong clock cannot delete every replica's data."""
        if partition.is_leader:
            await partition.log.maintain(partition.high_watermark, by_time=self._time_retention_allowed())
        else:
            await partition.log.maintain(partition.high_watermark, retention=False)

    def throttle_config(self) -> throttle_rules.ThrottleConfig:
        """The replication throttles in force; rebuilt when the metadata offset moves."""
        image = self.image

        def build() -> throttle_rules.ThrottleConfig:
            return throttle_rules.throttle_config(
                self.broker_id,
                self.config.values,
                image.dynamic_config("brokers", str(self.broker_id)),
                image.dynamic_config("brokers", ""),
                [(name, entries) for (kind, name), entries in image.configs.items() if kind == "topics"],
            )

        return self.throttles.update(image.offset, build)

    def replica_lag_time_max_ms(self) -> int:
        """Read on every produce request: parsed once per metadata change, like topic settings."""
        if self._replica_lag_time_max_ms is None:
            self._replica_lag_time_max_ms = int(
                self.image.dynamic_config("brokers", "").get(
                    "replica.lag.time.max.ms", self.config["replica.lag.time.max.ms"]
                )
            )
        return self._replica_lag_time_max_ms

    # -- ISR changes ------------------------------------------------------------------------

    async def _isr_loop(self) -> None:
        """Every ISR_CHECK_INTERVAL_S the leaders that changed since the last check (a follower
        fetched or caught up, the high watermark or the metadata moved); every
        ISR_SWEEP_INTERVAL_S all of them, a chunk at a time, for the changes that time alone
        brings (a follower that stopped fetching falls out after replica.lag.time.max.ms).
        So thousands of idle partitions cost a sweep a second, not ten."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            await asyncio.sleep(ISR_CHECK_INTERVAL_S)
            touched = self.changed.take_touched()
            sweep = loop.time() >= next_sweep
            if sweep:
                next_sweep = loop.time() + min(ISR_SWEEP_INTERVAL_S, self.replica_lag_time_max_ms() / 4000.0)
            partitions = list(self.partitions.values()) if sweep else [p for p in touched if isinstance(p, Partition)]
            try:
                for start in range(0, len(partitions), YIELD_EVERY_PARTITIONS):
                    if start:
                        await asyncio.sleep(0)
                    self._request_isr_changes(partitions[start : start + YIELD_EVERY_PARTITIONS])
            except Exception as exc:  # noqa: BLE001 - ISR changes must go on for the other partitions
                self.supervisor.survived("replica-isr", exc)

    def _request_isr_changes(self, partitions: list[Partition] | None = None) -> None:
        lag_max_ms = self.replica_lag_time_max_ms()
        unfenced = {b.broker_id for b in self.image.brokers.values() if not b.fenced}
        for partition in list(self.partitions.values()) if partitions is None else partitions:
            if self.partitions.get((partition.topic_id, partition.index)) is not partition:
                continue  # gone meanwhile (the loop yields between chunks)
            state = partition.prepare_isr_change(lag_max_ms, unfenced)
            if state is not None:
                self.supervisor.spawn(
                    self._alter_isr(partition, state), name=f"alter-isr-{partition.name}", critical=False
                )

    async def _alter_isr(self, partition: Partition, state) -> None:
        """Sends the AlterPartition for the partition's pending ISR state and reports how it ended."""
        async with self._alter_partition_slots:  # a bounded number in flight (ALTER_PARTITION_MAX_IN_FLIGHT)
            await self._send_alter_isr(partition, state)

    async def _send_alter_isr(self, partition: Partition, state) -> None:
        info = partition.info
        epoch = self._broker_epoch()
        new_isr = state.requested
        ended_at: int | None = None  # the partition epoch the controller left; None: refused or not sent
        try:
            if partition.isr_state is not state:
                return  # superseded by a metadata update while it waited for a slot
            if info is None or epoch is None:
                raise RaftlogError("COORDINATOR_NOT_AVAILABLE", "no broker epoch yet")
            request = controller_pb2.AlterPartitionRequest(
                cluster_id=self.cluster_id,
                broker_id=self.broker_id,
                broker_epoch=epoch,
                topic_id=partition.topic_id,
                partition=partition.index,
                leader_epoch=info.leader_epoch,
                partition_epoch=info.partition_epoch,
                new_isr=new_isr,
            )
            response = await self._controller.call("AlterPartition", request)
            log.info("%s: ISR %s -> %s", partition.name, list(info.isr), list(new_isr))
            ended_at = response.partition_epoch
        except RaftlogError as exc:
            # Either way the ISR check asks again with what the metadata then says; only a refusal
            # (not a controller that could not be reached in time) is worth an info line.
            level = logging.DEBUG if exc.retriable else logging.INFO
            log.log(level, "%s: AlterPartition to %s failed: %s", partition.name, list(new_isr), exc)
        finally:
            partition.isr_change_ended(state, ended_at)
