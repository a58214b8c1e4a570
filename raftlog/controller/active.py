"""The active controller: runs on every controller node, acts only while it is the Raft leader.

Decisions are pipelined, as in Kafka's QuorumController. Each is a pure function (controller/
decisions.py, topics.py, partitions.py) taken on the event loop, one at a time and without an
await in between, against the *view*: the committed image plus every record this leader has
proposed and not yet seen committed. Its records are applied to the view at once (so the next
decision sees them, committed or not) and join the open Raft entry. The open entry is proposed
at the end of the loop iteration, or, while CONTROLLER_MAX_PENDING_ENTRIES entries of ours (one
by default) are uncommitted, as soon as one of them commits (group commit: the decisions taken
meanwhile share one entry, one MetadataBatch, bounded by CONTROLLER_GROUP_COMMIT_MAX_BYTES).
Each request's answer waits for its own entry only.

- The view is made once per leadership: after one ReadIndex (which needs this term's first
  entry committed) and the apply of everything in the leader's log, the committed image is
  complete by construction, so later decisions need no quorum round trip before deciding.
- A decision that writes nothing (a heartbeat that changes nothing, an expiry check that finds
  nothing) proposes nothing; a heartbeat and a periodic check answer at once, an admin request
  that changed nothing waits for the records it may have read (the latest pending entry).
- Leadership lost (another leader, a new term, a proposal refused): every pending request fails
  with NOT_CONTROLLER and the view is discarded; the next leadership starts from the committed
  image only.

Periodic decisions (session expiry today) run through `_periodic`: a name, an interval and a
decision; each round decides on the view like any request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftlog import config as node_config
from raftlog.authorizer.acls import AclBinding, AclFilter
from raftlog.broker.clock_skew import BrokerClocks
from raftlog.controller import acls, credentials, decisions, leader_balance, reassignment, topics
from raftlog.controller import partitions as partition_rules
from raftlog.errors import RaftlogError
from raftlog.limits import (
    CONTROLLER_COMMIT_TIMEOUT_S,
    CONTROLLER_GROUP_COMMIT_MAX_BYTES,
    CONTROLLER_MAX_PENDING_ENTRIES,
    LEADER_BALANCE_MAX_ELECTIONS_PER_ROUND,
)
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

# Protobuf framing of one record inside a MetadataBatch: its field tag and length prefix.
RECORD_FRAMING_BYTES = 6


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


def _wall_ms() -> float:
    return time.time() * 1000.0


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    fenced: bool
    controller_time_ms: int  # our wall clock when answering
    controller_clock_trusted: bool  # a majority of the unfenced brokers' clocks agree with ours


@dataclass(eq=False)
class _Entry:
    """Records of decisions taken on the view, proposed together as the Raft entry at `index`."""

    index: int
    committed: asyncio.Future  # the index once applied here; NOT_CONTROLLER if leadership is lost
    records: list[metadata_pb2.MetadataRecord] = field(default_factory=list)
    size_bytes: int = 0
    applied: asyncio.Future | None = None  # the driver's future, once proposed
    deadline: asyncio.TimerHandle | None = None  # REQUEST_TIMED_OUT for its waiters unless it commits first


class ActiveController:
    def __init__(
        self,
        driver,
        state_machine: MetadataStateMachine,
        config: node_config.NodeConfig,
        tasks: TaskSupervisor,
        clock_ms: Callable[[], float] = _monotonic_ms,
        commit_timeout_s: float = CONTROLLER_COMMIT_TIMEOUT_S,
        wall_clock_ms: Callable[[], float] = _wall_ms,
        max_pending_entries: int = CONTROLLER_MAX_PENDING_ENTRIES,
    ):
        assert max_pending_entries >= 1, f"max_pending_entries {max_pending_entries}: no entry could be proposed"
        self._driver = driver
        self._supervisor = tasks
        self._state_machine = state_machine
        self._config = config
        self._session_timeout_ms = config["broker.session.timeout.ms"]
        self._election_timeout_ms = config["controller.quorum.election.timeout.ms"]
        self._clock_ms = clock_ms
        self._wall_clock_ms = wall_clock_ms  # only to compare with the brokers' wall clocks
        self._commit_timeout_s = commit_timeout_s
        self._sessions = decisions.BrokerSessions()
        self._offline = decisions.OfflineReplicas()  # replicas brokers report they cannot serve
        self._clocks = BrokerClocks(config["broker.clock.skew.max.ms"])  # the brokers' wall clocks against ours
        self._tasks: list[asyncio.Task] = []
        self._sessions_term = -1  # the Raft term in which this node last started broker sessions
        # The uncommitted view, valid while this node leads _view_term. Invariant: view = the
        # committed image + the records of _open and _pending, in index order.
        self._view: MetadataImage | None = None
        self._view_term = -1
        self._view_opening = asyncio.Lock()  # taken only to make the view, once per leadership
        self._open: _Entry | None = None  # decisions joining it; proposed at the end of this loop turn
        self._pending: dict[int, _Entry] = {}  # proposed, not yet applied here; by index, ascending
        self._entry_limit_bytes = min(CONTROLLER_GROUP_COMMIT_MAX_BYTES, driver.max_entry_bytes)
        self._max_pending_entries = max_pending_entries  # proposed and uncommitted, before the open entry waits
        driver.on_leader_change(self._leader_changed)

    @property
    def image(self) -> MetadataImage:
        """The committed image (what every node serves)."""
        return self._state_machine.image

    def is_active(self) -> bool:
        return self._driver.leader_term() is not None

    async def start(self) -> None:
        interval_s = max(0.05, self._session_timeout_ms / 20_000.0)
        self._periodic("controller-session-expiry", interval_s, self._expired_decision)
        if self._config["auto.leader.rebalance.enable"]:
            balance_interval_s = float(self._config["leader.imbalance.check.interval.seconds"])
            self._periodic("controller-leader-balance", balance_interval_s, self._balance_decision)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._lose_view(None)

    # -- the view and leadership ------------------------------------------------------------

    def _not_controller(self, leader_id: int | None, why: str = "this node is not the active controller"):
        return RaftlogError("NOT_CONTROLLER", why, leader_id)

    async def _active_view(self) -> MetadataImage:
        """The view of this leadership; made on the first decision of the term."""
        term = self._driver.leader_term()
        if term is None:
            raise self._not_controller(self._driver.status().leader_id)
        if self._view is not None and self._view_term == term:
            return self._view
        async with self._view_opening:
            if self._view is not None and self._view_term == term:
                return self._view
            self._lose_view(None)  # a view of an earlier term of ours, if the change went unnoticed
            try:
                await self._driver.read_index()
            except NotLeaderError as exc:
                raise self._not_controller(exc.leader_id) from None
            except TimeoutError:
                raise self._not_controller(None, "leadership could not be confirmed") from None
            # Entries of ours still in the log (an earlier view lost in this term) apply first.
            if not await self._driver.wait_applied(self._driver.last_index, self._commit_timeout_s):
                raise RaftlogError("REQUEST_TIMED_OUT", "the metadata quorum did not commit in time")
            if self._driver.leader_term() != term:
                raise self._not_controller(self._driver.status().leader_id)
            status = self._driver.status()
            assert status.applied_index == status.last_index and not self._pending and self._open is None, (
                f"the view of term {term} must start from an image holding the whole log: applied "
                f"{status.applied_index}, last {status.last_index}, {len(self._pending)} pending"
            )
            self._start_sessions(term)
            self._view, self._view_term = self.image.copy(), term
            log.info("active controller in term %d from metadata offset %d", term, self.image.offset)
            return self._view

    def _start_sessions(self, term: int) -> None:
        if self._sessions_term == term:
            return
        # A new term of ours: every broker gets a fresh session before any can expire, except the
        # leader we followed until just now: it has been silent since we last heard from it, so a
        # killed controller's partitions move as fast as any broker's.
        now_ms = self._clock_ms()
        previous, heard_ms = self._driver.previous_leader_contact()
        recent = now_ms - heard_ms <= PREVIOUS_LEADER_WINDOW_ELECTIONS * self._election_timeout_ms
        self._sessions.reset(list(self.image.brokers), now_ms, {previous: heard_ms} if recent else None)
        self._clocks.reset()
        self._sessions_term = term

    def _leader_changed(self, leader_id: int | None, term: int) -> None:
        if leader_id != self._driver.node_id:
            self._lose_view(leader_id)

    def _lose_view(self, leader_id: int | None) -> None:
        """Leadership is gone: pending requests fail with NOT_CONTROLLER (those whose entry was
        applied here already get their answer) and the view is discarded."""
        entries = list(self._pending.values()) + ([self._open] if self._open is not None else [])
        self._pending, self._open = {}, None
        self._view, self._view_term = None, -1
        for entry in entries:
            self._settle(entry, self._not_controller(leader_id, "the active controller lost its leadership"))

    # -- deciding ---------------------------------------------------------------------------

    async def _decide(
        self,
        decision: Decision,
        validate_only: bool = False,
        wait_if_unchanged: bool = True,
        answer: Callable[[MetadataImage], Any] | None = None,
    ) -> tuple[int, Any]:
        """Takes `decision` on the view and waits for its records to commit. Returns (the offset
        of its entry, answer(view) right after its records were applied to the view). With no
        records it answers at once if wait_if_unchanged is False, else once the latest pending
        entry (whose records it may have read) has committed."""
        view = await self._active_view()
        new_records = decision(view)
        if validate_only:
            return self.image.offset, None
        entry = self._join_entry(view, new_records) if new_records else self._latest_entry()
        value = answer(view) if answer is not None else None
        if entry is None or not (new_records or wait_if_unchanged):
            assert new_records or entry is not None or view.offset == self.image.offset, (
                f"nothing pending, yet the view is at offset {view.offset} and the image at {self.image.offset}"
            )
            return self.image.offset, value
        # One timer per entry, not per request; shielded, so a cancelled request (its client went
        # away) does not cancel the answer of the others in its entry.
        return await asyncio.shield(entry.committed), value

    def _latest_entry(self) -> _Entry | None:
        if self._open is not None:
            return self._open
        return next(reversed(self._pending.values()), None)

    def _join_entry(self, view: MetadataImage, new_records: list, alone: bool = False) -> _Entry:
        """Applies the records to the view and adds them to the open entry (a new one if it is full)."""
        size_bytes = sum(r.ByteSize() + RECORD_FRAMING_BYTES for r in new_records)
        if size_bytes > self._entry_limit_bytes and size_bytes > self._driver.max_entry_bytes:
            raise RaftlogError(
                "INVALID_REQUEST",
                f"the change is {size_bytes} bytes of metadata; one entry holds at most {self._driver.max_entry_bytes}",
            )
        if self._open is not None and (alone or self._open.size_bytes + size_bytes > self._entry_limit_bytes):
            self._flush()
            if self._view is not view:  # the proposal was refused: leadership is gone with the view
                raise self._not_controller(self._driver.status().leader_id)
        if self._open is None:
            index = self._driver.last_index + 1
            assert index > view.offset, f"entry {index} would apply to a view at offset {view.offset}"
            loop = asyncio.get_running_loop()
            self._open = _Entry(index, loop.create_future())
            self._open.deadline = loop.call_later(self._commit_timeout_s, self._expire, self._open)
            if len(self._pending) < self._max_pending_entries:
                asyncio.get_running_loop().call_soon(self._flush_if_room)
        entry = self._open
        view.apply_records(entry.index, new_records)
        entry.records += new_records
        entry.size_bytes += size_bytes
        if alone:
            self._flush()
        return entry

    def _flush_if_room(self) -> None:
        if len(self._pending) < self._max_pending_entries:
            self._flush()

    def _flush(self) -> None:
        """Proposes the open entry."""
        entry, self._open = self._open, None
        if entry is None:
            return
        try:
            index, applied = self._driver.propose_entry(encode_batch(*entry.records))
        except NotLeaderError as exc:  # lost, or handing leadership over: the view has records no one will commit
            self._open = entry
            self._lose_view(exc.leader_id)
            return
        assert index == entry.index, (
            f"the controller's entry went to index {index}, not {entry.index}: something else proposed on the leader"
        )
        entry.applied = applied
        self._pending[index] = entry
        applied.add_done_callback(lambda _: self._entry_applied(entry))

    def _entry_applied(self, entry: _Entry) -> None:
        if self._pending.get(entry.index) is not entry:
            return  # settled already, when the view was lost
        assert entry.applied is not None and entry.applied.done(), f"entry {entry.index} settled before it was applied"
        if entry.applied.exception() is not None:
            # Another leader's entry took the index: the view holds records that will never commit.
            self._lose_view(self._driver.status().leader_id)
            return
        del self._pending[entry.index]
        assert self.image.offset >= entry.index, (
            f"entry {entry.index} reported applied, the image is at offset {self.image.offset}"
        )
        self._settle(entry, None)
        if self._open is not None:
            self._flush_if_room()
        if not self._pending and self._open is None and self._view is not None:
            assert self._view.offset == self.image.offset, (
                f"every entry of the view committed, yet the view is at {self._view.offset} and the image at "
                f"{self.image.offset}"
            )

    def _expire(self, entry: _Entry) -> None:
        if not entry.committed.done():
            entry.committed.set_exception(
                RaftlogError("REQUEST_TIMED_OUT", "the metadata quorum did not commit in time")
            )
            entry.committed.exception()  # retrieved: its waiters may be gone

    def _settle(self, entry: _Entry, error: RaftlogError | None) -> None:
        if entry.deadline is not None:
            entry.deadline.cancel()
        if entry.committed.done():
            return
        applied = entry.applied
        if applied is not None and applied.done() and applied.exception() is None:
            entry.committed.set_result(entry.index)  # it committed before the news of the lost leadership
        elif error is not None:
            entry.committed.set_exception(error)
            entry.committed.exception()  # every waiter may have timed out; nothing to log then
        else:
            entry.committed.set_result(entry.index)

    def _periodic(self, name: str, interval_s: float, decision: Decision) -> None:
        """Runs `decision` every interval_s while this node is the active controller."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                if not self.is_active():
                    continue
                try:
                    await self._decide(decision, wait_if_unchanged=False)
                except RaftlogError as exc:
                    log.debug("%s skipped: %s", name, exc)
                except Exception as exc:  # noqa: BLE001 - the check must keep running
                    self._supervisor.survived(name, exc)

        self._tasks.append(self._supervisor.spawn(loop(), name=name, critical=True))

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
        offset, _ = await self._decide(
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

    async def broker_heartbeat(self, request) -> HeartbeatAnswer:
        """Whether the broker is fenced after this heartbeat: as committed, so a fencing change
        still pending reads as the state before it (the broker hears of it next time); and whether
        this controller's wall clock is trusted (raftlog/broker/clock_skew.py), this broker's
        clock included. A heartbeat that changes nothing proposes nothing and answers at once."""
        received_ms = self._wall_clock_ms()
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
            ),
            wait_if_unchanged=False,
        )
        if request.broker_time_ms > 0:  # 0: a broker that does not send its clock
            # After the decision: the first one of a term starts the samples afresh.
            self._clocks.observe(request.broker_id, request.broker_time_ms, received_ms)
        broker = self.image.brokers.get(request.broker_id)
        trusted = self._clocks.trusted(self._driver.node_id, decisions.usable_brokers(self.image))
        fenced = broker is None or broker.epoch != request.broker_epoch or broker.fenced
        return HeartbeatAnswer(fenced, int(self._wall_clock_ms()), trusted)

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
        offset, _ = await self._decide(lambda image: decisions.alter_configs(image, resource, ops), validate_only)
        return offset

    async def create_acls(self, bindings: list[AclBinding]) -> tuple[int, list[AclBinding]]:
        """(the offset, the bindings added: the others existed already)."""
        created: list[AclBinding] = []

        def decide(image: MetadataImage):
            new_records, added = acls.create_acls(image, bindings)
            created[:] = added
            return new_records

        offset, _ = await self._decide(decide)
        return offset, created

    async def delete_acls(self, filters: list[AclFilter]) -> tuple[int, list[AclBinding]]:
        """(the offset, the bindings removed)."""
        deleted: list[AclBinding] = []

        def decide(image: MetadataImage):
            new_records, doomed = acls.delete_acls(image, filters)
            deleted[:] = doomed
            return new_records

        offset, _ = await self._decide(decide)
        return offset, deleted

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str], validate_only: bool
    ) -> tuple[int, bytes]:
        """(offset, topic id; b"" when only validated)."""
        partitions = partitions if partitions > 0 else int(self._broker_default("num.partitions"))
        if replication_factor <= 0:
            replication_factor = int(self._broker_default("default.replication.factor"))
        offset, topic = await self._decide(
            lambda image: topics.create_topic(image, name, partitions, replication_factor, configs),
            validate_only,
            answer=lambda view: view.topic(name),
        )
        return offset, topic.topic_id if topic is not None else b""

    async def alter_scram_credentials(
        self,
        upsertions: list[admin_pb2.ScramCredentialUpsertion],
        deletions: list[admin_pb2.ScramCredentialDeletion],
    ) -> int:
        """Sets and deletes SCRAM credentials, all in one entry (raftlog/controller/credentials.py)."""
        offset, _ = await self._decide(lambda image: credentials.alter_scram_credentials(image, upsertions, deletions))
        return offset

    async def delete_topic(self, name: str) -> int:
        offset, _ = await self._decide(lambda image: topics.delete_topic(image, name))
        return offset

    async def create_partitions(self, name: str, total: int, validate_only: bool) -> int:
        offset, _ = await self._decide(lambda image: topics.create_partitions(image, name, total), validate_only)
        return offset

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

        offset, _ = await self._decide(decide)
        return offset

    async def alter_reassignments(
        self, entries: list[reassignment.ReassignmentEntry], validate_only: bool = False
    ) -> int:
        """Starts or cancels every entry, all or nothing (raftlog/controller/reassignment.py)."""
        offset, _ = await self._decide(
            lambda image: reassignment.alter_reassignments(
                image, entries, set(image.brokers), decisions.usable_brokers(image)
            ),
            validate_only,
        )
        return offset

    async def unregister_broker(self, broker_id: int) -> int:
        offset, _ = await self._decide(lambda image: decisions.unregister_broker(image, broker_id))
        self._sessions.forget(broker_id)
        self._offline.forget(broker_id)
        self._clocks.forget(broker_id)
        log.info("unregistered broker %d", broker_id)
        return offset

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

        _, partition = await self._decide(decide, answer=lambda view: view.topics_by_id[topic_id].partitions[index])
        return partition

    # -- benchmark and session expiry -------------------------------------------------------

    async def benchmark(self, count: int, concurrency: int, payload_bytes: int) -> tuple[int, float, list[float]]:
        """Commits `count` no-op entries, one record per Raft entry (no group commit: the figure is
        the quorum's), with `concurrency` in flight; returns (committed, seconds, latencies_ms)."""
        await self._active_view()
        record = no_op(b"x" * payload_bytes)
        latencies_ms: list[float] = []
        remaining = iter(range(count))

        async def writer() -> None:
            for _ in remaining:
                started = time.perf_counter()
                entry = self._join_entry(await self._active_view(), [record], alone=True)
                await asyncio.shield(entry.committed)
                latencies_ms.append((time.perf_counter() - started) * 1000.0)

        started = time.perf_counter()
        assert concurrency >= 1, f"benchmark concurrency {concurrency} (the servicer checks the range)"
        await asyncio.gather(*(writer() for _ in range(concurrency)))
        return len(latencies_ms), time.perf_counter() - started, latencies_ms

    def _expired_decision(self, image: MetadataImage) -> list[metadata_pb2.MetadataRecord]:
        expired = decisions.fence_expired(
            image, self._sessions, self._clock_ms(), self._session_timeout_ms, self._unclean_default, self._offline
        )
        if expired:
            ids = [r.broker_fencing.broker_id for r in expired if r.HasField("broker_fencing")]
            log.warning("fencing brokers %s: no heartbeat for %d ms", ids, self._session_timeout_ms)
        return expired

    # -- automatic leader balance (Kafka's auto.leader.rebalance.enable) ----------------------

    def _usable_for(self, partition: PartitionInfo) -> set[int]:
        """Brokers that may lead this partition: unfenced, and not reporting its replica offline."""
        return self._offline.usable_for(partition, decisions.usable_brokers(self.image))

    def _balance_decision(self, image: MetadataImage) -> list[metadata_pb2.MetadataRecord]:
        """Every leader.imbalance.check.interval.seconds, while active: preferred-leader elections for
        brokers above leader.imbalance.per.broker.percentage (raftlog/controller/leader_balance.py)."""
        elections = leader_balance.rebalance(
            image,
            self._config["leader.imbalance.per.broker.percentage"],
            self._usable_for,
            LEADER_BALANCE_MAX_ELECTIONS_PER_ROUND,
        )
        if elections:
            log.info("leader balance: %d preferred-leader elections", len(elections))
        return elections
