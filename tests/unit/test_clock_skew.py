"""A node whose wall clock runs days ahead must not delete data by time (issue 9 §4): retention
is the leader's decision, taken only while its clock agrees with the active controller's and the
controller's own clock is trusted (most brokers' clocks agree with it); followers drop what the
leader dropped. Fake clocks throughout."""

import asyncio
import time

from raftlog.api.controller_service import ControllerServicer
from raftlog.broker.clock_skew import BrokerClocks, ClockSkew, controller_clock_trusted
from raftlog.broker.lifecycle import BrokerLifecycle
from raftlog.log import LogConfig
from raftlog.log.record_batch import encode_batch
from raftlog.metadata.image import PartitionInfo
from raftlog.metrics.registry import clock_gauges
from raftlog.replication import manager as manager_module
from raftlog.replication.log_adapter import PartitionReplicaLog
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import controller_pb2
from tests.unit.replica_manager_harness import FakeStateMachine, make_manager
from tests.unit.test_controller_pipeline import _controller

TOPIC_ID = b"C" * 16
DAY_MS = 24 * 3600 * 1000
BOUND_MS = 300_000


def test_the_skew_verdict_follows_heartbeat_answers():
    skew = ClockSkew(BOUND_MS)
    assert not skew.time_retention_allowed, "unknown until a heartbeat answered"
    now = 1_000_000_000_000.0
    assert skew.observe(now + 8 * DAY_MS, now + 8 * DAY_MS + 20, now + 10, True) is None  # 8 days ahead: still no
    assert skew.skew_ms == -8 * DAY_MS and not skew.time_retention_allowed
    assert skew.observe(now, now + 20, now + 10, True) is True  # the clock was fixed
    assert skew.time_retention_allowed
    assert skew.observe(now, now + 20, now + 10 + BOUND_MS + 1, True) is False
    assert skew.observe(now, now + 20, now + 10, True) is True
    # Our clock agrees with the controller's, but most brokers' clocks do not: no retention.
    assert skew.observe(now, now + 20, now + 10, False) is False
    assert skew.agrees and not skew.time_retention_allowed


def test_the_controllers_clock_is_trusted_only_while_most_brokers_agree_with_it():
    eight_days_behind = -8.0 * DAY_MS
    # The controller (node 1) runs 8 days ahead: both other brokers disagree, it is outvoted.
    assert not controller_clock_trusted(1, {1, 2, 3}, {1: 0.0, 2: eight_days_behind, 3: eight_days_behind}, BOUND_MS)
    # One broker runs 8 days ahead: the controller and the other broker are a majority.
    assert controller_clock_trusted(1, {1, 2, 3}, {1: 0.0, 2: 40.0, 3: 8.0 * DAY_MS}, BOUND_MS)
    # A single-node cluster: the controller is the majority of itself, sample or not.
    assert controller_clock_trusted(1, {1}, {}, BOUND_MS)
    # Unknown samples do not agree: a new controller has none until the brokers heartbeat.
    assert not controller_clock_trusted(1, {1, 2, 3}, {}, BOUND_MS)
    assert controller_clock_trusted(1, {1, 2, 3}, {2: -BOUND_MS}, BOUND_MS)  # at the bound: agrees
    assert not controller_clock_trusted(1, {1, 2, 3}, {2: -BOUND_MS - 1}, BOUND_MS)
    # A controller-only node counts too: itself and brokers 2, 3, 4 (a tie is no majority).
    assert not controller_clock_trusted(1, {2, 3, 4}, {2: 0.0}, BOUND_MS)
    assert controller_clock_trusted(1, {2, 3, 4}, {2: 0.0, 3: 0.0}, BOUND_MS)
    # The controller's samples: the broker's clock when sent minus ours when received.
    clocks = BrokerClocks(BOUND_MS)
    clocks.observe(2, 1_000.0, 1_000.0 + 8 * DAY_MS)
    clocks.observe(3, 1_000.0, 1_000.0 + 8 * DAY_MS)
    assert clocks.skews_ms == {2: eight_days_behind, 3: eight_days_behind} and not clocks.trusted(1, {1, 2, 3})
    clocks.reset()
    assert clocks.skews_ms == {} and clocks.trusted(1, {1})


class InProcessController:
    """A broker's controller channel, straight into the controller's servicer."""

    def __init__(self, servicer: ControllerServicer) -> None:
        self._servicer = servicer

    async def call(self, method, request):
        assert method == "BrokerHeartbeat", method
        return await self._servicer.BrokerHeartbeat(request, None)


def test_a_controller_whose_clock_runs_ahead_is_outvoted_and_nobody_deletes_by_time():
    """Issue 9 §4 again, on the controller: a node 8 days ahead while it is the active controller
    compared its clock with its own and deleted by time. Brokers 1 (the controller), 2 and 3."""

    async def scenario():
        real_ms = time.time() * 1000
        wall = {1: real_ms + 8 * DAY_MS, 2: real_ms, 3: real_ms}  # each node's wall clock
        controller, driver, state_machine = _controller(wall_clock_ms=lambda: wall[1])
        channel = InProcessController(ControllerServicer("c", controller))
        lifecycles = {}
        for broker_id in (1, 2, 3):
            lifecycle = BrokerLifecycle(
                "c",
                broker_id,
                "127.0.0.1",
                9,
                controller=channel,
                metadata_offset=lambda: state_machine.image.offset,
                heartbeat_interval_ms=250,
                session_timeout_ms=2000,
                tasks=TaskSupervisor(),
                clock_skew_max_ms=BOUND_MS,
                wall_clock_ms=lambda b=broker_id: wall[b],
            )
            lifecycle.broker_epoch = state_machine.image.brokers[broker_id].epoch
            lifecycles[broker_id] = lifecycle

        async def heartbeat_round() -> dict[int, bool]:
            """Two heartbeats each: an answer holds the samples the controller had when it answered."""
            for lifecycle in 2 * list(lifecycles.values()):
                await lifecycle._heartbeat()
            return {b: lifecycle.clock_skew.time_retention_allowed for b, lifecycle in lifecycles.items()}

        def suspended_gauge(broker_id: int) -> float:
            families = {f.name: f for f in clock_gauges(lifecycles[broker_id].clock_skew)()}
            return families["raftlog_time_retention_suspended"].samples[0].value

        entries = driver.last_index
        # The controller's clock runs 8 days ahead. Its own broker agrees with it, yet deletes nothing.
        assert await heartbeat_round() == {1: False, 2: False, 3: False}
        assert lifecycles[1].clock_skew.agrees, "the controller's broker compares the controller's clock with itself"
        assert suspended_gauge(1) == 1.0
        # Its clock is fixed: the brokers agree with it again.
        wall[1] = real_ms
        assert await heartbeat_round() == {1: True, 2: True, 3: True}
        assert suspended_gauge(1) == 0.0
        # Broker 3 runs 8 days ahead: only it suspends.
        wall[3] = real_ms + 8 * DAY_MS
        assert await heartbeat_round() == {1: True, 2: True, 3: False}
        assert driver.last_index == entries, "heartbeats that change nothing propose nothing"

    asyncio.run(scenario())


def test_a_broker_learns_its_skew_from_heartbeat_answers():
    async def scenario():
        real_ms = time.time() * 1000

        class AnsweringController:
            async def call(self, method, request):
                assert abs(request.broker_time_ms - lifecycle._wall_clock_ms()) < 1, "the heartbeat carries our clock"
                return controller_pb2.BrokerHeartbeatResponse(
                    is_fenced=False, controller_time_ms=int(real_ms), controller_clock_trusted=True
                )

        lifecycle = BrokerLifecycle(
            "c",
            1,
            "127.0.0.1",
            9,
            controller=AnsweringController(),
            metadata_offset=lambda: 0,
            heartbeat_interval_ms=250,
            session_timeout_ms=2000,
            tasks=TaskSupervisor(),
            clock_skew_max_ms=BOUND_MS,
            wall_clock_ms=lambda: real_ms + 8 * DAY_MS,
        )
        lifecycle.broker_epoch = 5
        await lifecycle._heartbeat()
        assert not lifecycle.clock_skew.time_retention_allowed
        lifecycle._wall_clock_ms = lambda: real_ms
        await lifecycle._heartbeat()
        assert lifecycle.clock_skew.time_retention_allowed

    asyncio.run(scenario())


class Clock:
    def __init__(self, now_ms: float) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms


def test_time_retention_is_the_leaders_and_only_with_a_trusted_clock(tmp_path, monkeypatch):
    written_ms = time.time() * 1000
    config = LogConfig(segment_bytes=1024, retention_ms=DAY_MS)
    clocks = {1: Clock(written_ms), 2: Clock(written_ms)}
    trusted = {1: False, 2: True}

    def replica_log(broker_id: int) -> PartitionReplicaLog:
        log = PartitionReplicaLog(tmp_path / f"b{broker_id}", config)
        log.partition_log._clock_ms = clocks[broker_id]  # the wall clock retention reads
        return log

    async def maintenance_round(manager) -> None:
        """One pass of the broker's own maintenance loop."""
        monkeypatch.setattr(manager_module, "MAINTENANCE_INTERVAL_S", 0.001)
        task = asyncio.get_running_loop().create_task(manager._maintenance_loop())
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def fetch_round(follower: Partition, leader: Partition) -> None:
        outcome = leader.read_for_follower(
            2, follower.log.log_end_offset, follower.log.latest_epoch(), follower.leader_epoch, 1 << 20
        )
        await follower.append_as_follower(outcome.records, outcome.high_watermark, outcome.log_start_offset)

    async def scenario():
        state_machine = FakeStateMachine()
        managers = {}
        for broker_id in (1, 2):
            managers[broker_id] = make_manager(broker_id, state_machine)
            managers[broker_id]._time_retention_allowed = lambda b=broker_id: trusted[b]
        info = PartitionInfo(TOPIC_ID, 0, (1, 2), (1, 2), 1, 0, 0)
        leader = Partition("t", TOPIC_ID, 0, 1, replica_log(1), ChangeNotifier())
        follower = Partition("t", TOPIC_ID, 0, 2, replica_log(2), ChangeNotifier())
        leader.apply_metadata(info)
        leader.become_leader()
        follower.apply_metadata(info)
        follower.become_follower()
        managers[1].partitions[(TOPIC_ID, 0)] = leader
        managers[2].partitions[(TOPIC_ID, 0)] = follower
        for i in range(40):
            batch = encode_batch([(b"k", b"v%03d" % i + bytes(100), None, int(written_ms))])
            await leader.append_as_leader(batch, acks=1, timeout_ms=100, min_isr=1)
        for _ in range(20):
            await fetch_round(follower, leader)
            if follower.high_watermark == 40:
                break
        assert leader.high_watermark == follower.high_watermark == 40
        segments = len(leader.log.partition_log.segments)
        assert segments > 3

        # Both clocks run 8 days ahead. The follower does no time retention of its own, and the
        # leader's clock disagrees with the controller's: nothing is deleted anywhere.
        clocks[1].now_ms = clocks[2].now_ms = written_ms + 8 * DAY_MS
        await maintenance_round(managers[2])
        await maintenance_round(managers[1])
        assert follower.log.log_start_offset == 0, "a follower deleted by its own clock"
        assert leader.log.log_start_offset == 0, "a leader with an untrusted clock deleted by time"
        assert len(leader.log.partition_log.segments) == segments

        # The leader's clock is trusted (8 days really passed): it deletes, and the follower
        # drops exactly what the leader dropped on its next fetch.
        trusted[1] = True
        await maintenance_round(managers[1])
        assert leader.log.log_start_offset > 0
        await fetch_round(follower, leader)
        assert follower.log.log_start_offset == leader.log.log_start_offset
        for partition in (leader, follower):
            partition.log.close()

    asyncio.run(scenario())
