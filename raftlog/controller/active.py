"""The active controller: runs on every controller node, acts only while it is the Raft leader.

Every decision goes through `_decide`: it waits for a ReadIndex (so it sees all metadata
committed by earlier leaders), computes records with a pure function of the image, and
commits them as one entry. Decisions are taken one at a time, so two of them never read
the same image and commit records that contradict each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from raftlog import config as node_config
from raftlog.controller import decisions, leader_balance, topics
from raftlog.controller import partitions as partition_rules
from raftlog.errors import RaftlogError
from raftlog.limits import LEADER_BALANCE_MAX_ELECTIONS_PER_ROUND
from raftlog.metadata.image import MetadataImage, PartitionInfo
from raftlog.metadata.records import encode_batch, no_op
from raftlog.metadata.state_machine import MetadataStateMachine
from raftlog.raft import NotLeaderError
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import admin_pb2, metadata_pb2

log = logging.getLogger(__name__)

Decision = Callable[[MetadataImage], list[metadata_pb2.MetadataRecord]]


# A previous leader heard from within this many election timeouts is the one we replaced.
PREVIOUS_LEADER_WINDOW_ELECTIONS = 3


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


class ActiveController:
    def __init__(
        self,
        driver,
        state_machine: MetadataStateMachine,
        config: node_config.NodeConfig,
        tasks: TaskSupervisor,
        clock_ms: Callable[[], float] = _monotonic_ms,
    ):
        self._driver = driver
        self._supervisor = tasks
        self._state_machine = state_machine
        self._config = config
        self._session_timeout_ms = config["broker.session.timeout.ms"]
        self._election_timeout_ms = config["controller.quorum.election.timeout.ms"]
        self._clock_ms = clock_ms
        self._sessions = decisions.BrokerSessions()
        self._offline = decisions.OfflineReplicas()  # replicas brokers report they cannot serve
        self._decision_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._balance_task: asyncio.Task | None = None
        self._sessions_term = -1  # the Raft term in which this node last started broker sessions

    @property
    def image(self) -> MetadataImage:
        return self._state_machine.image

    def is_active(self) -> bool:
        status = self._driver.status()
        return status.leader_id == status.node_id

    async def start(self) -> None:
        self._task = self._supervisor.spawn(self._fence_expired_loop(), name="controller-session-expiry", critical=True)
        if self._config["auto.leader.rebalance.enable"]:
            self._balance_task = self._supervisor.spawn(
                self.leader_balance_loop(), name="controller-leader-balance", critical=True
            )

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._balance_task) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- plumbing ---------------------------------------------------------------------------

    async def _propose(self, data: bytes) -> int:
        """Proposes one entry; returns its offset once applied here."""
        try:
            return await self._driver.propose(data)
        except NotLeaderError as exc:
            raise RaftlogError("NOT_CONTROLLER", "this node is not the active controller", exc.leader_id) from None
        except TimeoutError:
            raise RaftlogError("REQUEST_TIMED_OUT", "the metadata quorum did not commit in time") from None

    async def _prepare(self) -> None:
        """Confirms leadership and catches up with everything committed before deciding."""
        try:
            await self._driver.read_index()
        except NotLeaderError as exc:
            raise RaftlogError("NOT_CONTROLLER", "this node is not the active controller", exc.leader_id) from None
        except TimeoutError:
            raise RaftlogError("NOT_CONTROLLER", "leadership could not be confirmed") from None
        term = self._driver.status().term
        if self._sessions_term != term:
            # A new term of ours: every broker gets a fresh session before any can expire,
            # except the leader we followed until just now: it has been silent since we last
            # heard from it, so a killed controller's partitions move as fast as any broker's.
            now_ms = self._clock_ms()
            previous, heard_ms = self._driver.previous_leader_contact()
            recent = now_ms - heard_ms <= PREVIOUS_LEADER_WINDOW_ELECTIONS * self._election_timeout_ms
            self._sessions.reset(list(self.image.brokers), now_ms, {previous: heard_ms} if recent else None)
            self._sessions_term = term

    async def _decide(self, decision: Decision, validate_only: bool = False) -> int:
        """Runs a pure decision on the current image and commits its records; returns the offset."""
        async with self._decision_lock:
            await self._prepare()
            new_records = decision(self.image)
            if validate_only or not new_records:
                return self.image.offset
            return await self._propose(encode_batch(*new_records))

    def _broker_default(self, name: str):
        """A broker-level value: the dynamic cluster default if set, else the static config."""
        dynamic = self.image.dynamic_config("brokers", "").get(name)
        return dynamic if dynamic is not None else self._config[name]

    @property
    def _unclean_default(self) -> bool:
        return bool(self._config["unclean.leader.election.enable"])

    # -- brokers ----------------------------------------------------------------------------

    async def register_broker(self, request) -> int:
        now_ms = self._clock_ms()
        offset = await self._decide(
            lambda image: decisions.register_broker(
                image,
                request.broker_id,
                request.incarnation_id,
                request.endpoint.host,
                request.endpoint.port,
                request.rack,
                self._sessions,
                now_ms,
                self._session_timeout_ms,
                tuple((e.listener, e.host, e.port) for e in request.listeners),
            )
        )
        self._sessions.touch(request.broker_id, now_ms)
        self._offline.forget(request.broker_id)  # a new incarnation reports afresh
        log.info(
            "registered broker %d at %s:%d, epoch %d",
            request.broker_id,
            request.endpoint.host,
            request.endpoint.port,
            offset,
        )
        return offset

    async def broker_heartbeat(self, request) -> bool:
        """Returns whether the broker is fenced after this heartbeat."""
        if not request.want_fence:
            self._sessions.touch(request.broker_id, self._clock_ms())
        offline = frozenset((r.topic_id, r.partition) for r in request.offline_replicas)
        if not request.want_fence:
            self._offline.report(request.broker_id, offline)
        await self._decide(
            lambda image: decisions.broker_heartbeat(
                image,
                request.broker_id,
                request.broker_epoch,
                request.metadata_offset,
                request.want_fence,
                self._unclean_default,
                offline,
                self._offline,
            )
        )
        return self.image.brokers[request.broker_id].fenced

    async def allocate_producer_ids(self, broker_id: int, broker_epoch: int) -> tuple[int, int]:
        """(first id, count) of a block of producer ids now owned by the broker."""
        block: list[int] = []

        def decide(image: MetadataImage):
            first, new_records = decisions.allocate_producer_ids(image, broker_id, broker_epoch)
            block.append(first)
            return new_records

        await self._decide(decide)
        return block[0], decisions.PRODUCER_ID_BLOCK_SIZE

    # -- configs and topics -----------------------------------------------------------------

    async def alter_configs(
        self, resource: admin_pb2.ConfigResource, ops: list[admin_pb2.AlterConfigOp], validate_only: bool
    ) -> int:
        return await self._decide(lambda image: decisions.alter_configs(image, resource, ops), validate_only)

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str], validate_only: bool
    ) -> int:
        partitions = partitions if partitions > 0 else int(self._broker_default("num.partitions"))
        if replication_factor <= 0:
            replication_factor = int(self._broker_default("default.replication.factor"))
        return await self._decide(
            lambda image: topics.create_topic(image, name, partitions, replication_factor, configs), validate_only
        )

    async def delete_topic(self, name: str) -> int:
        return await self._decide(lambda image: topics.delete_topic(image, name))

    async def create_partitions(self, name: str, total: int, validate_only: bool) -> int:
        return await self._decide(lambda image: topics.create_partitions(image, name, total), validate_only)

    def _partition(self, image: MetadataImage, topic_name: str, index: int) -> PartitionInfo:
        topic = image.topic(topic_name)
        if topic is None or index not in topic.partitions:
            raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic_name}-{index} does not exist")
        return topic.partitions[index]

    async def elect_leader(self, topic_name: str, index: int, unclean: bool) -> int:
        def decide(image: MetadataImage):
            partition = self._partition(image, topic_name, index)
            usable = self._offline.usable_for(partition, decisions.usable_brokers(image))
            if unclean:
                return partition_rules.elect_unclean(partition, usable)
            return partition_rules.elect_preferred(partition, usable)

        return await self._decide(decide)

    async def reassign(self, topic_name: str, index: int, replicas: list[int]) -> int:
        return await self._decide(
            lambda image: partition_rules.start_reassignment(
                self._partition(image, topic_name, index), replicas, set(image.brokers)
            )
        )

    async def alter_partition(
        self, topic_id: bytes, index: int, request: partition_rules.AlterPartitionRequest, broker_epoch: int
    ) -> PartitionInfo:
        def decide(image: MetadataImage):
            decisions.check_broker_epoch(image, request.broker_id, broker_epoch)
            topic = image.topics_by_id.get(topic_id)
            if topic is None or index not in topic.partitions:
                raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"partition {index} of that topic id does not exist")
            partition = topic.partitions[index]
            return partition_rules.alter_partition(
                partition, request, self._offline.usable_for(partition, decisions.usable_brokers(image))
            )

        await self._decide(decide)
        return self.image.topics_by_id[topic_id].partitions[index]

    # -- benchmark and session expiry -------------------------------------------------------

    async def benchmark(self, count: int, concurrency: int, payload_bytes: int) -> tuple[int, float, list[float]]:
        """Commits `count` no-op entries with `concurrency` in flight; returns (committed, seconds, latencies_ms)."""
        await self._prepare()
        data = encode_batch(no_op(b"x" * payload_bytes))
        latencies_ms: list[float] = []
        remaining = iter(range(count))

        async def writer() -> None:
            for _ in remaining:
                started = time.perf_counter()
                await self._propose(data)
                latencies_ms.append((time.perf_counter() - started) * 1000.0)

        started = time.perf_counter()
        assert concurrency >= 1, f"benchmark concurrency {concurrency} (the servicer checks the range)"
        await asyncio.gather(*(writer() for _ in range(concurrency)))
        return len(latencies_ms), time.perf_counter() - started, latencies_ms

    async def _fence_expired_loop(self) -> None:
        interval_s = max(0.05, self._session_timeout_ms / 20_000.0)
        while True:
            await asyncio.sleep(interval_s)
            if not self.is_active():
                continue
            if self._sessions_term == self._driver.status().term and not decisions.fence_expired(
                self.image, self._sessions, self._clock_ms(), self._session_timeout_ms
            ):
                continue  # nothing expired: no need for a quorum round trip
            try:
                await self._decide(self._expired_decision)
            except RaftlogError as exc:
                log.debug("session expiry check skipped: %s", exc)
            except Exception as exc:  # noqa: BLE001 - expiry must keep being checked
                self._supervisor.survived("controller-session-expiry", exc)

    def _expired_decision(self, image: MetadataImage) -> list[metadata_pb2.MetadataRecord]:
        expired = decisions.fence_expired(
            image, self._sessions, self._clock_ms(), self._session_timeout_ms, self._unclean_default, self._offline
        )
        if expired:
            ids = [r.broker_fencing.broker_id for r in expired if r.HasField("broker_fencing")]
            log.warning("fencing brokers %s: no heartbeat for %d ms", ids, self._session_timeout_ms)
        return expired

    # -- automatic leader balance (Kafka's auto.leader.rebalance.enable) ----------------------

    async def leader_balance_loop(self) -> None:
        """Every leader.imbalance.check.interval.seconds, while active: preferred-leader elections for
        brokers above leader.imbalance.per.broker.percentage (raftlog/controller/leader_balance.py)."""
        interval_s = float(self._config["leader.imbalance.check.interval.seconds"])
        while True:
            await asyncio.sleep(interval_s)
            if not self.is_active() or not leader_balance.rebalance(
                self.image, self._config["leader.imbalance.per.broker.percentage"], self._usable_for, 1
            ):
                continue  # balanced (seen on the local image): no quorum round trip
            try:
                await self._decide(self._balance_decision)
            except RaftlogError as exc:
                log.debug("leader balance round skipped: %s", exc)
            except Exception as exc:  # noqa: BLE001 - the balance must keep being checked
                self._supervisor.survived("controller-leader-balance", exc)

    def _usable_for(self, partition: PartitionInfo) -> set[int]:
        """Brokers that may lead this partition: unfenced, and not reporting its replica offline."""
        return self._offline.usable_for(partition, decisions.usable_brokers(self.image))

    def _balance_decision(self, image: MetadataImage) -> list[metadata_pb2.MetadataRecord]:
        elections = leader_balance.rebalance(
            image,
            self._config["leader.imbalance.per.broker.percentage"],
            self._usable_for,
            LEADER_BALANCE_MAX_ELECTIONS_PER_ROUND,
        )
        if elections:
            log.info("leader balance: %d preferred-leader elections", len(elections))
        return elections
