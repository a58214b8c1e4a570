"""ReplicaManager: the partitions this broker hosts, kept in step with the metadata image.

- After metadata changes it reconciles: opens logs for new replicas, makes each partition
  leader or follower in its current epoch, and deletes the data of partitions that left
  this broker (topic deletion, reassignment).
- It serves produce, consumer fetch and replica fetch against the partitions.
- A periodic task asks the controller for ISR changes the leaders want (AlterPartition).
- Followers fetch through one ReplicaFetcher task per leader broker (fetcher.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from raftlog import config as node_config
from raftlog.channels import Peers, error_from_rpc
from raftlog.errors import RaftlogError
from raftlog.log import LogConfig, TopicSettings
from raftlog.limits import RECONCILE_CHUNK_PARTITIONS, YIELD_EVERY_PARTITIONS
from raftlog.metadata.image import MetadataImage, PartitionInfo
from raftlog.replication.fetcher import ReplicaFetcher
from raftlog.replication.log_adapter import ReplicaLog
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition
from raftlog.tasks import TaskSupervisor
from raftlog.topic_config import effective_topic_config
from raftlog.v1 import controller_pb2, controller_pb2_grpc

log = logging.getLogger(__name__)

ISR_CHECK_INTERVAL_S = 0.1
MAINTENANCE_INTERVAL_S = 5.0
PARTITION_RECORD_KINDS = frozenset({"topic", "remove_topic", "partition", "partition_change", "broker_fencing",
                                    "register_broker", "config"})

LogFactory = Callable[[str, int, LogConfig], ReplicaLog]  # (topic, partition, the topic's log config) -> log


async def yield_every(index: int) -> None:
    """Gives the event loop a turn at every YIELD_EVERY_PARTITIONS-th partition of a long loop."""
    if index % YIELD_EVERY_PARTITIONS == YIELD_EVERY_PARTITIONS - 1:
        await asyncio.sleep(0)


def _chunks(items: list) -> list[list]:
    size = RECONCILE_CHUNK_PARTITIONS
    return [items[i:i + size] for i in range(0, len(items), size)]


def _delete_logs(partitions: list[Partition]) -> None:
    for partition in partitions:
        partition.log.delete()


class ReplicaManager:
    def __init__(self, broker_id: int, cluster_id: str, config: node_config.NodeConfig, state_machine,
                 peers: Peers, broker_epoch: Callable[[], int | None], controller_id: Callable[[], int | None],
                 log_factory: LogFactory, tasks: TaskSupervisor, metrics=None,
                 time_retention_allowed: Callable[[], bool] = lambda: True):
        self.broker_id = broker_id
        self.supervisor = tasks
        self.cluster_id = cluster_id
        self.config = config
        self._state_machine = state_machine
        self._peers = peers
        self._broker_epoch = broker_epoch
        self._controller_id = controller_id
        self._log_factory = log_factory
        self.metrics = metrics
        self._time_retention_allowed = time_retention_allowed  # False while our wall clock is not trusted
        self.partitions: dict[tuple[bytes, int], Partition] = {}
        self._topic_settings: dict[str, TopicSettings] = {}
        self._replica_lag_time_max_ms: int | None = None  # the dynamic broker value, or the static one
        self._fetchers: dict[int, ReplicaFetcher] = {}
        self._dirty = asyncio.Event()
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
        ]

    async def stop(self) -> None:
        # Out of service first: requests that arrive during shutdown get NOT_LEADER_OR_FOLLOWER
        # (clients move on) instead of meeting a closed log.
        closing, self.partitions = list(self.partitions.values()), {}
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fetcher in self._fetchers.values():
            await fetcher.stop()
        for partition in closing:
            partition.log.close()

    def _on_metadata_batch(self, offset: int, batch) -> None:
        if batch is None or any(record.WhichOneof("record") in PARTITION_RECORD_KINDS for record in batch.records):
            self._loop.call_soon_threadsafe(self._dirty.set)

    async def _reconcile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._topic_settings.clear()
            self._replica_lag_time_max_ms = None
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - keep serving; the next change retries
                self.supervisor.survived("replica-reconcile", exc)

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

    async def reconcile(self) -> None:
        """Brings the hosted partitions in line with the image. Logs are opened and deleted on a
        worker thread, RECONCILE_CHUNK_PARTITIONS at a time (opening one is a few files and an fsync):
        a topic of thousands of partitions created or deleted must not stop heartbeats and
        requests meanwhile. What it applies is the image as of the start; a change meanwhile sets
        off another round."""
        wanted: dict[tuple[bytes, int], tuple[str, PartitionInfo]] = {}
        for topic_name, info in self.image.partitions():
            if self.broker_id in info.replicas:
                wanted[(info.topic_id, info.partition)] = (topic_name, info)
        leaving = [key for key in self.partitions if key not in wanted]
        for chunk in _chunks(leaving):
            removed = [self._take_out(key) for key in chunk if key in self.partitions]
            await asyncio.to_thread(_delete_logs, removed)
        for index, (key, (topic_name, info)) in enumerate(wanted.items()):
            if index % RECONCILE_CHUNK_PARTITIONS == RECONCILE_CHUNK_PARTITIONS - 1:
                await asyncio.sleep(0)
            partition = self.partitions.get(key)
            if partition is not None:
                partition.log.reconfigure(self.topic_settings(topic_name).log)  # a config altered since
                self._apply(partition, info)
        new = [(key, topic_name, info) for key, (topic_name, info) in wanted.items() if key not in self.partitions]
        for chunk in _chunks(new):
            specs = [(topic_name, info, self.topic_settings(topic_name).log) for _, topic_name, info in chunk]
            opened = await asyncio.to_thread(self._open_partitions, specs)
            for (key, _, info), partition in zip(chunk, opened):
                self.partitions[key] = partition
                self._apply(partition, info)

    def _open_partitions(self, specs: list[tuple[str, PartitionInfo, LogConfig]]) -> list[Partition]:
        """On a worker thread: new partitions' logs (files only; nothing shared is touched)."""
        return [Partition(topic_name, info.topic_id, info.partition, self.broker_id,
                          self._log_factory(topic_name, info.partition, log_config), self.changed)
                for topic_name, info, log_config in specs]

    def _apply(self, partition: Partition, info: PartitionInfo) -> None:
        role = partition.apply_metadata(info)
        if role == "leader":
            self._unfollow(partition)
            partition.become_leader()
        elif role == "follower":
            self._unfollow(partition)
            partition.become_follower()
            if info.leader >= 0:
                self._fetcher_for(info.leader).add(partition)
        partition.changed.notify_all()

    def _fetcher_for(self, leader_id: int) -> ReplicaFetcher:
        if leader_id not in self._fetchers:
            fetcher = ReplicaFetcher(self, leader_id, self._peers)
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
        partition.info = None
        partition.changed.notify_all()
        log.info("%s: no longer hosted here; deleting its data", partition.name)
        return partition

    # -- lookups ----------------------------------------------------------------------------

    def partition_by_name(self, topic: str, index: int) -> Partition:
        topic_info = self.image.topic(topic)
        if topic_info is None or index not in topic_info.partitions:
            raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic}-{index} does not exist")
        partition = self.partitions.get((topic_info.topic_id, index))
        if partition is None or partition.info is None:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {self.broker_id} has no replica of {topic}-{index}")
        return partition

    def partition_by_id(self, topic_id: bytes, index: int) -> Partition:
        partition = self.partitions.get((topic_id, index))
        if partition is None or partition.info is None:
            raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {self.broker_id} has no replica of that partition")
        return partition

    def check_replica_epoch(self, replica_id: int, broker_epoch: int) -> None:
        """A replica fetch counts (high watermark, ISR) only from the follower's current
        incarnation, as registered in our metadata image (KIP-903): an earlier incarnation's
        fetch, or one from anyone merely claiming the id, says nothing about its log today."""
        broker = self.image.brokers.get(replica_id)
        if broker is None or broker.epoch != broker_epoch:
            registered = "not registered" if broker is None else f"registered with epoch {broker.epoch}"
            raise RaftlogError("STALE_BROKER_EPOCH",
                               f"replica fetch from broker {replica_id} with epoch {broker_epoch}; it is {registered}")

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

    def replica_lag_time_max_ms(self) -> int:
        """Read on every produce request: parsed once per metadata change, like topic settings."""
        if self._replica_lag_time_max_ms is None:
            self._replica_lag_time_max_ms = int(self.image.dynamic_config("brokers", "").get(
                "replica.lag.time.max.ms", self.config["replica.lag.time.max.ms"]))
        return self._replica_lag_time_max_ms

    # -- ISR changes ------------------------------------------------------------------------

    async def _isr_loop(self) -> None:
        while True:
            await asyncio.sleep(ISR_CHECK_INTERVAL_S)
            try:
                self._request_isr_changes()
            except Exception as exc:  # noqa: BLE001 - ISR changes must go on for the other partitions
                self.supervisor.survived("replica-isr", exc)

    def _request_isr_changes(self) -> None:
        lag_max_ms = self.replica_lag_time_max_ms()
        unfenced = {b.broker_id for b in self.image.brokers.values() if not b.fenced}
        for partition in list(self.partitions.values()):
            state = partition.prepare_isr_change(lag_max_ms, unfenced)
            if state is not None:
                self.supervisor.spawn(self._alter_isr(partition, state), name=f"alter-isr-{partition.name}",
                                      critical=False)

    async def _alter_isr(self, partition: Partition, state) -> None:
        """Sends the AlterPartition for the partition's pending ISR state and reports how it ended."""
        info = partition.info
        epoch = self._broker_epoch()
        controller_id = self._controller_id()
        new_isr = state.requested
        ended_at: int | None = None  # the partition epoch the controller left; None: refused or not sent
        try:
            if info is None or epoch is None or controller_id is None:
                raise RaftlogError("NOT_CONTROLLER", "no controller or broker epoch yet")
            stub = controller_pb2_grpc.ControllerServiceStub(self._peers.channel(controller_id))
            request = controller_pb2.AlterPartitionRequest(
                cluster_id=self.cluster_id, broker_id=self.broker_id, broker_epoch=epoch,
                topic_id=partition.topic_id, partition=partition.index, leader_epoch=info.leader_epoch,
                partition_epoch=info.partition_epoch, new_isr=new_isr,
            )
            response = await stub.AlterPartition(request, timeout=self.config.controller_rpc_timeout_s)
            log.info("%s: ISR %s -> %s", partition.name, list(info.isr), list(new_isr))
            ended_at = response.partition_epoch
        except grpc.RpcError as exc:
            log.info("%s: AlterPartition to %s refused: %s", partition.name, list(new_isr), error_from_rpc(exc))
        except RaftlogError as exc:
            log.debug("%s: AlterPartition not sent: %s", partition.name, exc)
        finally:
            partition.isr_change_ended(state, ended_at)

