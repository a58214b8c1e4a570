"""The active controller pipelines decisions: each is taken on the view (committed image plus the
records proposed and not yet committed), proposed at once, and answered when its own entry commits.

A stub Raft driver stands in for the quorum, so a test decides when entries commit and when
leadership is lost.
"""

from __future__ import annotations

import asyncio

import pytest

from raftlog.config import load_config
from raftlog.controller.active import ActiveController
from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.records import encode_batch
from raftlog.metadata.state_machine import MetadataStateMachine
from raftlog.node_ids import NO_NODE
from raftlog.raft import NotLeaderError
from raftlog.raft.driver import RaftStatus
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import admin_pb2, controller_pb2

BROKERS = (1, 2, 3)


class StubDriver:
    """The RaftDriver's surface the controller uses; entries commit when the test says so."""

    node_id = 1
    max_entry_bytes = 1024 * 1024

    def __init__(self, state_machine: MetadataStateMachine):
        self._state_machine = state_machine
        self.term = 1
        self.leader = self.node_id
        self.entries: list[tuple[int, bytes, asyncio.Future | None]] = []  # (term, data, proposer's future)
        self.applied = 0
        self.read_indexes = 0
        self._callbacks: list = []
        self._append_own_empty_entry()

    def _append_own_empty_entry(self) -> None:
        self.entries.append((self.term, b"", None))

    # -- the driver's API ---------------------------------------------------------------

    def leader_term(self) -> int | None:
        return self.term if self.leader == self.node_id else None

    @property
    def last_index(self) -> int:
        return len(self.entries)

    def propose_entry(self, data: bytes) -> tuple[int, asyncio.Future]:
        if self.leader != self.node_id:
            raise NotLeaderError(self.leader)
        future = asyncio.get_running_loop().create_future()
        self.entries.append((self.term, data, future))
        return len(self.entries), future

    async def read_index(self) -> None:
        if self.leader != self.node_id:
            raise NotLeaderError(self.leader)
        self.read_indexes += 1
        self.commit()  # the leader's empty entry of its term commits

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        return self.applied >= index

    def status(self) -> RaftStatus:
        return RaftStatus(
            node_id=self.node_id,
            role="leader" if self.leader == self.node_id else "follower",
            term=self.term,
            leader_id=None if self.leader == NO_NODE else self.leader,
            commit_index=self.applied,
            applied_index=self.applied,
            last_index=self.last_index,
            last_log_term=self.entries[-1][0],
            snapshot_index=0,
        )

    def on_leader_change(self, callback) -> None:
        self._callbacks.append(callback)

    def previous_leader_contact(self) -> tuple[int, float]:
        return NO_NODE, 0.0

    # -- what the test drives -----------------------------------------------------------

    @property
    def uncommitted(self) -> int:
        return self.last_index - self.applied

    def commit(self, upto: int | None = None) -> None:
        """Commits and applies every entry up to `upto` (all by default)."""
        for index in range(self.applied + 1, (upto or self.last_index) + 1):
            term, data, future = self.entries[index - 1]
            result = self._state_machine.apply(index, term, data) if data else None
            if future is not None and not future.done():
                future.set_result(result)
            self.applied = index

    def lose_leadership(self, new_leader: int) -> None:
        self.leader = new_leader
        self.term += 1
        for callback in self._callbacks:
            callback(new_leader, self.term)

    def win_leadership_dropping_uncommitted(self) -> None:
        """The uncommitted entries are overwritten by the other leader; this node wins again later."""
        for _, _, future in self.entries[self.applied :]:
            if future is not None and not future.done():
                future.set_exception(NotLeaderError(self.leader))
        del self.entries[self.applied :]
        self.term += 1
        self.leader = self.node_id
        self._append_own_empty_entry()
        for callback in self._callbacks:
            callback(self.node_id, self.term)


def _controller(commit_timeout_s: float = 5.0, **options) -> tuple[ActiveController, StubDriver, MetadataStateMachine]:
    state_machine = MetadataStateMachine()
    driver = StubDriver(state_machine)
    # Committed before the test starts: the brokers registered (epochs 1..3), then unfenced.
    setup = [records.register_broker(b, f"inc-{b}", "h", 9000 + b) for b in BROKERS]
    setup += [records.broker_fencing(b, epoch, fenced=False) for epoch, b in enumerate(BROKERS, start=1)]
    driver.entries = [(1, encode_batch(record), None) for record in setup] + driver.entries
    driver.commit(len(setup))
    config = load_config(
        None,
        environ={
            "RAFTLOG_NODE_ID": "1",
            "RAFTLOG_CONTROLLER_QUORUM_VOTERS": "1@127.0.0.1:1",
            "RAFTLOG_LOG_DIRS": "/nonexistent-raftlog-test",
        },
    )
    controller = ActiveController(
        driver, state_machine, config, TaskSupervisor(), commit_timeout_s=commit_timeout_s, **options
    )
    return controller, driver, state_machine


def _set_config(value: str) -> tuple[admin_pb2.ConfigResource, list[admin_pb2.AlterConfigOp]]:
    return admin_pb2.ConfigResource(type="brokers", name=""), [
        admin_pb2.AlterConfigOp(name="log.retention.hours", op=admin_pb2.AlterConfigOp.SET, value=value)
    ]


async def _turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_non_conflicting_requests_are_proposed_before_the_first_commits():
    async def scenario():
        controller, driver, state_machine = _controller(max_pending_entries=2)
        first = asyncio.create_task(controller.alter_configs(*_set_config("100"), False))
        await _turns()
        assert driver.uncommitted == 1, "the first request's entry is proposed"
        second = asyncio.create_task(controller.create_topic("orders", 3, 3, {}, False))
        await _turns()
        assert driver.uncommitted == 2, "the second request is proposed while the first is uncommitted"
        assert not first.done() and not second.done(), "neither is answered before its entry commits"
        assert state_machine.image.topic("orders") is None and state_machine.image.dynamic_config("brokers", "") == {}

        driver.commit(driver.last_index - 1)
        first_offset = await first
        await _turns()
        assert not second.done(), "the second waits for its own entry"
        driver.commit()
        second_offset, topic_id = await second
        assert first_offset < second_offset == state_machine.image.offset
        assert state_machine.image.topic("orders").topic_id == topic_id
        assert state_machine.image.dynamic_config("brokers", "") == {"log.retention.hours": "100"}
        assert driver.read_indexes == 1, "one ReadIndex for the leadership, none per request"
        assert controller._view.to_snapshot() == state_machine.image.to_snapshot(), "the view is the image again"

    asyncio.run(scenario())


def test_decisions_taken_meanwhile_share_one_entry():
    async def scenario():
        controller, driver, state_machine = _controller(max_pending_entries=2)
        requests = []
        for i in range(2):
            requests.append(asyncio.create_task(controller.alter_configs(*_set_config(str(100 + i)), False)))
            await _turns()
        assert driver.uncommitted == 2  # two entries in flight: the limit of pending entries
        more = [asyncio.create_task(controller.alter_configs(*_set_config(str(200 + i)), False)) for i in range(50)]
        await _turns()
        assert driver.uncommitted == 2, "the later decisions wait in the open entry while two are pending"
        driver.commit()
        await _turns()
        assert driver.uncommitted == 1, "the open entry goes out as soon as there is room, all 50 in it"
        driver.commit()
        offsets = await asyncio.gather(*requests, *more)
        assert len(set(offsets[2:])) == 1 and offsets[2] == state_machine.image.offset
        assert state_machine.image.dynamic_config("brokers", "") == {"log.retention.hours": "249"}, (
            "the last decided wins"
        )

    asyncio.run(scenario())


def test_by_default_one_entry_is_pending_and_the_decisions_taken_meanwhile_go_out_together():
    async def scenario():
        controller, driver, state_machine = _controller()
        first = asyncio.create_task(controller.alter_configs(*_set_config("100"), False))
        await _turns()
        assert driver.uncommitted == 1
        topic = asyncio.create_task(controller.create_topic("orders", 3, 3, {}, False))
        more = [asyncio.create_task(controller.alter_configs(*_set_config(str(200 + i)), False)) for i in range(20)]
        duplicate = asyncio.create_task(controller.create_topic("orders", 3, 3, {}, False))
        await _turns()
        assert driver.uncommitted == 1, "the later decisions wait in the open entry while one is pending"
        assert duplicate.done(), "decided at once on the view, which holds the waiting topic: refused"
        with pytest.raises(RaftlogError) as refused:
            await duplicate
        assert refused.value.reason == "TOPIC_ALREADY_EXISTS"
        driver.commit()
        await first
        await _turns()
        assert driver.uncommitted == 1, "as soon as the first commits, the open entry goes out, all 21 in it"
        assert not topic.done() and state_machine.image.topic("orders") is None
        driver.commit()
        offsets = await asyncio.gather(*more)
        _, topic_id = await topic
        assert set(offsets) == {state_machine.image.offset}, "one entry for every decision taken meanwhile"
        assert state_machine.image.topic("orders").topic_id == topic_id
        assert state_machine.image.dynamic_config("brokers", "") == {"log.retention.hours": "219"}

    asyncio.run(scenario())


def test_a_conflicting_request_is_decided_on_the_pending_records():
    async def scenario():
        controller, driver, state_machine = _controller()
        first = asyncio.create_task(controller.create_topic("orders", 1, 3, {}, False))
        second = asyncio.create_task(controller.create_topic("orders", 1, 3, {}, False))
        await _turns()
        assert second.done() and not first.done(), "the second fails at once, before the first commits"
        with pytest.raises(RaftlogError) as refused:
            await second
        assert refused.value.reason == "TOPIC_ALREADY_EXISTS"
        assert state_machine.image.topic("orders") is None
        driver.commit()
        _, topic_id = await first
        assert state_machine.image.topic("orders").topic_id == topic_id

    asyncio.run(scenario())


def test_lost_leadership_fails_pending_requests_and_the_next_leadership_starts_from_the_committed_image():
    async def scenario():
        controller, driver, state_machine = _controller()
        pending = [
            asyncio.create_task(controller.create_topic("orders", 1, 3, {}, False)),
            asyncio.create_task(controller.alter_configs(*_set_config("100"), False)),
        ]
        await _turns()
        assert driver.uncommitted == 1
        driver.lose_leadership(new_leader=2)
        for task in pending:
            with pytest.raises(RaftlogError) as lost:
                await task
            assert lost.value.reason == "NOT_CONTROLLER"
        with pytest.raises(RaftlogError) as follower:
            await controller.create_topic("orders", 1, 3, {}, False)
        assert follower.value.reason == "NOT_CONTROLLER" and follower.value.leader_id == 2

        driver.win_leadership_dropping_uncommitted()
        created = asyncio.create_task(controller.create_topic("orders", 1, 3, {}, False))
        await _turns()
        assert driver.read_indexes == 2, "a new leadership confirms itself once"
        driver.commit()
        _, topic_id = await created  # not TOPIC_ALREADY_EXISTS: the lost records were discarded
        assert state_machine.image.topic("orders").topic_id == topic_id
        assert state_machine.image.dynamic_config("brokers", "") == {}

    asyncio.run(scenario())


def test_a_heartbeat_is_answered_while_admin_requests_are_pending():
    async def scenario():
        controller, driver, state_machine = _controller()
        admin = asyncio.create_task(controller.alter_configs(*_set_config("100"), False))
        await _turns()
        assert driver.uncommitted == 1
        broker = state_machine.image.brokers[2]
        heartbeat = controller_pb2.BrokerHeartbeatRequest(
            broker_id=2, broker_epoch=broker.epoch, metadata_offset=broker.epoch
        )
        answer = await asyncio.wait_for(controller.broker_heartbeat(heartbeat), timeout=1.0)
        assert answer.fenced is False
        assert driver.uncommitted == 1, "a heartbeat that changes nothing proposes nothing"
        assert not admin.done()
        driver.commit()
        await admin

    asyncio.run(scenario())


def test_a_heartbeat_that_fences_waits_for_its_commit_and_sees_pending_fencing():
    async def scenario():
        controller, driver, state_machine = _controller()
        broker = state_machine.image.brokers[3]
        request = controller_pb2.BrokerHeartbeatRequest(
            broker_id=3, broker_epoch=broker.epoch, metadata_offset=broker.epoch, want_fence=True
        )
        fencing = asyncio.create_task(controller.broker_heartbeat(request))
        await _turns()
        assert driver.uncommitted == 1 and not fencing.done()
        again = await asyncio.wait_for(controller.broker_heartbeat(request), timeout=1.0)
        assert again.fenced is False, "the fencing is pending: the answer is the committed state"
        assert driver.uncommitted == 1, "the second sees the pending fencing and proposes nothing"
        driver.commit()
        assert (await fencing).fenced is True

    asyncio.run(scenario())


def test_a_request_whose_entry_does_not_commit_in_time_times_out_and_a_cancelled_one_leaves_the_others():
    async def scenario():
        controller, driver, state_machine = _controller(commit_timeout_s=0.2)
        first, second = (asyncio.create_task(controller.alter_configs(*_set_config(v), False)) for v in ("1", "2"))
        await _turns()
        assert driver.uncommitted == 1, "both decisions share one entry"
        first.cancel()  # its client went away
        await _turns()
        assert not second.done(), "cancelling one request does not answer the other"
        with pytest.raises(RaftlogError) as late:
            await second
        assert late.value.reason == "REQUEST_TIMED_OUT"
        driver.commit()  # it commits after all: the next request goes on from there
        third = asyncio.create_task(controller.alter_configs(*_set_config("3"), False))
        await _turns()
        driver.commit()
        assert await third == state_machine.image.offset
        assert state_machine.image.dynamic_config("brokers", "") == {"log.retention.hours": "3"}

    asyncio.run(scenario())
