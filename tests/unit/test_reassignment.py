"""Reassignment plans (the planner and plan files), the controller's all-or-nothing batch with
cancel, UnregisterBroker's refusals, and the replication throttle's token bucket."""

from collections import Counter

import pytest

from raftlog.client import reassignment_plan as plans
from raftlog.controller import decisions, reassignment
from raftlog.controller import partitions as rules
from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.replication import throttle
from raftlog.v1 import metadata_pb2


def apply(image: MetadataImage, new_records) -> None:
    image.apply_batch(image.offset + 1, metadata_pb2.MetadataBatch(records=list(new_records)))


def cluster(brokers=(1, 2, 3, 4)) -> MetadataImage:
    image = MetadataImage()
    for broker_id in brokers:
        apply(image, [records.register_broker(broker_id, f"i{broker_id}", "127.0.0.1", 9000 + broker_id)])
        apply(image, [records.broker_fencing(broker_id, image.offset, False)])
    return image


def with_topic(image, name="t", assignment=((1, 2), (2, 3), (3, 1))):
    topic_id = name.encode().ljust(16, b"_")
    apply(image, [records.topic(name, topic_id)])
    apply(image, [records.partition(topic_id, i, list(r), r[0]) for i, r in enumerate(assignment)])
    return lambda i: image.topic(name).partitions[i]


def reason_of(call) -> str:
    with pytest.raises(RaftlogError) as info:
        call()
    return info.value.reason


# -- the planner ------------------------------------------------------------------------------


def test_decommission_plan_moves_only_the_replicas_of_the_leaving_broker_and_spreads_leaders():
    current = {("t", i): [1 + i % 3, 1 + (i + 1) % 3] for i in range(6)}  # brokers 1..3, RF 2
    plan = plans.propose(current, [1, 2, 4])
    assert all(3 not in replicas for replicas in plan.values())
    moved = sum(len(set(plan[k]) - set(current[k])) for k in current)
    assert moved == sum(3 in r for r in current.values())  # exactly the replicas that were on broker 3
    assert Counter(r for replicas in plan.values() for r in replicas) == {1: 4, 2: 4, 4: 4}
    assert Counter(replicas[0] for replicas in plan.values()) == {1: 2, 2: 2, 4: 2}
    untouched = [key for key in current if 3 not in current[key]]
    assert untouched and all(plan[key] == current[key] for key in untouched)  # not even reordered


def test_plan_that_changes_nothing_moves_nothing():
    current = {("t", i): [1 + i % 3, 1 + (i + 1) % 3] for i in range(6)}
    assert plans.propose(current, [1, 2, 3]) == current
    assert plans.moving(current, plans.propose(current, [1, 2, 3])) == []


def test_a_broker_added_to_the_list_takes_its_share():
    current = {("t", i): [1 + i % 2, 1 + (i + 1) % 2] for i in range(4)}  # all on brokers 1, 2
    plan = plans.propose(current, [1, 2, 3])
    counts = Counter(r for replicas in plan.values() for r in replicas)
    assert max(counts.values()) - min(counts.values()) <= 1 and counts[3] >= 2


def test_planner_refusals():
    with pytest.raises(plans.PlanError, match="names only 2 brokers"):
        plans.propose({("t", 0): [1, 2, 3]}, [1, 2])
    with pytest.raises(plans.PlanError, match="no broker"):
        plans.propose({("t", 0): [1]}, [])


def test_plan_files_round_trip_and_bad_ones_are_refused():
    plan = {("t", 0): [2, 1], ("u", 3): [3]}
    text = plans.plan_json(plan)
    assert '"log_dirs":["any","any"]' in text
    assert plans.parse_plan(text) == plan
    assert plans.parse_topics_to_move('{"version":1,"topics":[{"topic":"a"},{"topic":"b"}]}') == ["a", "b"]
    bad = {
        "{": "not valid JSON",
        "[]": "JSON object",
        '{"version":2,"partitions":[]}': "version 2",
        '{"partitions":[]}': "needs",
        '{"partitions":[{"topic":"t","partition":0,"replicas":[1,1]}]}': "more than once",
        '{"partitions":[{"topic":"t","partition":-1,"replicas":[1]}]}': "integer >= 0",
        '{"partitions":[{"topic":"t","partition":0,"replicas":[]}]}': "non-empty",
        '{"partitions":[{"topic":"t","partition":0,"replicas":["1"]}]}': "broker ids",
        '{"partitions":[{"topic":"t","partition":0,"replicas":[1],"log_dirs":["/d"]}]}': "log dirs",
        '{"partitions":[{"topic":"t","partition":0,"replicas":[1]},{"topic":"t","partition":0,"replicas":[2]}]}': (
            "appears more than once"
        ),
    }
    for text, message in bad.items():
        with pytest.raises(plans.PlanError, match=message):
            plans.parse_plan(text)


def test_throttled_replicas_are_kafkas_leader_and_follower_lists():
    current = {("t", 0): [1, 2], ("t", 1): [2, 3], ("t", 2): [3, 1]}
    target = {("t", 0): [1, 2], ("t", 1): [2, 4], ("t", 2): [4, 1]}
    assert plans.throttled_replicas(current, target) == {"t": ("1:2,1:3,2:3,2:1", "1:4,2:4")}


def test_progress_by_partition():
    target = {("t", 0): [1, 2], ("t", 1): [2, 4], ("t", 2): [4, 1]}
    states = {
        ("t", 0): plans.PartitionState((1, 2), (), ()),
        ("t", 1): plans.PartitionState((2, 4, 3), (4,), (3,)),
        ("t", 2): plans.PartitionState((3, 1), (), ()),
    }
    status = {key: s for key, (s, _) in plans.progress(target, states).items()}
    assert status == {("t", 0): plans.COMPLETE, ("t", 1): plans.IN_PROGRESS, ("t", 2): plans.DIFFERENT}


# -- the controller: a batch applies whole or not at all ----------------------------------------


def test_a_batch_with_one_bad_entry_changes_nothing():
    image = cluster()
    part = with_topic(image)
    good = reassignment.ReassignmentEntry("t", 0, (4, 2))
    registered, usable = set(image.brokers), decisions.usable_brokers(image)
    for bad, reason in [
        (reassignment.ReassignmentEntry("t", 9, (1, 2)), "UNKNOWN_TOPIC_OR_PARTITION"),
        (reassignment.ReassignmentEntry("nope", 0, (1, 2)), "UNKNOWN_TOPIC_OR_PARTITION"),
        (reassignment.ReassignmentEntry("t", 1, (2, 9)), "INVALID_REPLICA_ASSIGNMENT"),
        (reassignment.ReassignmentEntry("t", 1, (2, 2)), "INVALID_REPLICA_ASSIGNMENT"),
        (reassignment.ReassignmentEntry("t", 1, (), cancel=True), "NO_REASSIGNMENT_IN_PROGRESS"),
        (reassignment.ReassignmentEntry("t", 0, (1, 4)), "INVALID_REQUEST"),  # twice in one request
    ]:
        assert reason_of(lambda: reassignment.alter_reassignments(image, [good, bad], registered, usable)) == reason
    assert part(0).replicas == (1, 2) and not part(0).adding_replicas
    apply(image, reassignment.alter_reassignments(image, [good], registered, usable))
    assert part(0).replicas == (4, 2, 1) and part(0).adding_replicas == (4,)
    again = reassignment.ReassignmentEntry("t", 0, (3, 2))
    assert reason_of(lambda: reassignment.alter_reassignments(image, [again], registered, usable)) == (
        "REASSIGNMENT_IN_PROGRESS"
    )


def test_cancel_reverts_to_the_original_replicas_and_keeps_the_isr_rules():
    image = cluster()
    part = with_topic(image, assignment=((1, 2),))
    registered, usable = set(image.brokers), decisions.usable_brokers(image)
    start = [reassignment.ReassignmentEntry("t", 0, (3, 4))]
    apply(image, reassignment.alter_reassignments(image, start, registered, usable))
    assert part(0).replicas == (3, 4, 1, 2) and part(0).removing_replicas == (1, 2)
    # Broker 3 caught up and joined the ISR; 4 has not: the move is still running.
    grow = rules.AlterPartitionRequest(1, part(0).leader_epoch, part(0).partition_epoch, (1, 2, 3))
    apply(image, rules.alter_partition(part(0), grow, usable))
    assert part(0).adding_replicas == (3, 4)
    cancel = [reassignment.ReassignmentEntry("t", 0, (), cancel=True)]
    apply(image, reassignment.alter_reassignments(image, cancel, registered, usable))
    p = part(0)
    assert (p.replicas, p.isr, p.leader, p.adding_replicas, p.removing_replicas) == ((1, 2), (1, 2), 1, (), ())


def test_cancel_moves_leadership_off_an_added_replica():
    image = cluster()
    part = with_topic(image, assignment=((1, 2),))
    p = part(0)
    # A move to (3, 2) in flight, 3 caught up and leading: cancel hands leadership to an original replica.
    apply(
        image,
        [
            records.partition_change(
                p.topic_id, 0, leader=3, isr=[3, 2, 1], replicas=[3, 2, 1], adding_replicas=[3], removing_replicas=[1]
            )
        ],
    )
    apply(image, reassignment.cancel_reassignment(part(0), decisions.usable_brokers(image)))
    assert part(0).replicas == (2, 1) and part(0).leader == 2 and part(0).isr == (2, 1)


def test_cancel_is_refused_when_no_original_replica_is_in_sync():
    image = cluster()
    part = with_topic(image, assignment=((1,),))
    p = part(0)
    apply(
        image,
        [records.partition_change(p.topic_id, 0, leader=3, isr=[3], replicas=[3, 1], adding_replicas=[3])],
    )
    assert reason_of(lambda: reassignment.cancel_reassignment(part(0), {1, 2, 3, 4})) == "INVALID_REPLICA_ASSIGNMENT"


def test_unregister_broker_refuses_a_live_broker_and_one_holding_replicas():
    image = cluster()
    with_topic(image, assignment=((1, 2),))
    assert reason_of(lambda: decisions.unregister_broker(image, 9)) == "UNKNOWN_BROKER"
    assert "is alive" in _message(lambda: decisions.unregister_broker(image, 3))
    both = _message(lambda: decisions.unregister_broker(image, 1))
    assert "is alive" in both and "holds 1 replicas (t-0)" in both
    for broker_id in (2, 3):
        apply(image, [records.broker_fencing(broker_id, image.brokers[broker_id].epoch, True)])
    assert "holds 1 replicas (t-0)" in _message(lambda: decisions.unregister_broker(image, 2))
    apply(image, decisions.unregister_broker(image, 3))
    assert 3 not in image.brokers
    copy = MetadataImage()
    copy.apply_batch(1, metadata_pb2.MetadataBatch(records=[records.unregister_broker(1, 0)]))  # unknown: no-op
    assert copy.brokers == {}


def _message(call) -> str:
    with pytest.raises(RaftlogError) as info:
        call()
    return info.value.message


# -- the throttle -------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now_s = 100.0

    def __call__(self):
        return self.now_s


def test_token_bucket_averages_its_rate_and_pays_debts_first():
    clock = Clock()
    bucket = throttle.TokenBucket(clock)
    assert bucket.available() is None  # unlimited until a rate is set
    bucket.set_rate(1000)
    assert bucket.available() == 0
    sent = 0
    for _ in range(100):  # 10 s of 100 ms steps, sending whatever is allowed in 300-byte batches
        clock.now_s += 0.1
        while (bucket.available() or 0) > 0:
            bucket.take(300)
            sent += 300
    assert 9_000 <= sent <= 10_000 + 300  # the rate, give or take one batch
    clock.now_s += 60
    assert bucket.available() == 1000 * throttle.BURST_S  # a second's worth at most
    bucket.take(5000)
    clock.now_s += 2
    assert bucket.available() < 0  # a debt of 4000 takes 4 s to pay


def test_throttle_config_applies_to_listed_replicas_only():
    static = {throttle.LEADER_RATE_KEY: 2**63 - 1, throttle.FOLLOWER_RATE_KEY: 2**63 - 1}
    topics = [("t", {throttle.LEADER_REPLICAS_KEY: "0:1,1:2", throttle.FOLLOWER_REPLICAS_KEY: "0:3"}), ("u", {})]
    config = throttle.throttle_config(1, static, {throttle.LEADER_RATE_KEY: "500"}, {}, topics)
    assert config.leader_rate == 500 and config.follower_rate is None
    assert config.leader_throttled("t", 0, 1) and not config.leader_throttled("t", 1, 1)
    assert not config.leader_throttled("u", 0, 1) and not config.follower_throttled("t", 0, 3)
    config = throttle.throttle_config(3, static, {}, {throttle.FOLLOWER_RATE_KEY: "700"}, topics)
    assert config.follower_rate == 700 and config.follower_throttled("t", 0, 3)
    everything = throttle.throttle_config(
        1, static, {throttle.LEADER_RATE_KEY: "9"}, {}, [("t", {throttle.LEADER_REPLICAS_KEY: "*"})]
    )
    assert everything.leader_throttled("t", 7, 1)


def test_the_follower_side_throttle_holds_back_only_its_out_of_sync_partitions(monkeypatch):
    """Broker 2 follows "in" (in the ISR) and "out" (being added: not in the ISR, throttled at
    1000 B/s on the follower side). With the clock stopped, "out" is fetched only while the bucket
    holds bytes, asking for no more than it holds; "in" is in every fetch."""
    import asyncio
    from types import SimpleNamespace

    from raftlog.metadata.image import PartitionInfo
    from raftlog.replication import fetcher as fetcher_module
    from raftlog.replication.notifier import ChangeNotifier
    from raftlog.replication.partition import Partition
    from raftlog.tasks import TaskSupervisor
    from raftlog.v1 import replication_pb2
    from tests.unit.fake_replica_log import FakeReplicaLog

    def follower(topic: str, isr: tuple[int, ...]) -> Partition:
        partition = Partition(topic, topic.encode().ljust(16, b"_"), 0, 2, FakeReplicaLog(), ChangeNotifier())
        partition.apply_metadata(PartitionInfo(partition.topic_id, 0, (1, 2), isr, 1, 0, 0))
        partition.become_follower()
        return partition

    in_sync, moving = follower("in", (1, 2)), follower("out", (1,))
    asked: list[dict[bytes, int | None]] = []  # per request: topic id -> partition_max_bytes (None: not asked)

    class FakeStream:  # the fetcher's FetchStream, answering from here
        def __init__(self, channel):
            pass

        def close(self):
            pass

        async def fetch(self, request, timeout_s):
            await asyncio.sleep(0.001)
            asked.append({p.topic_id: p.partition_max_bytes for p in request.partitions})
            results = []
            for p in request.partitions:
                records = b""
                if p.topic_id == moving.topic_id:
                    records = b"%d|0|" % p.fetch_offset + b"y" * 595  # 600 bytes or so
                results.append(
                    replication_pb2.ReplicaFetchResult(
                        topic_id=p.topic_id, partition=0, high_watermark=9, records=records
                    )
                )
            return replication_pb2.ReplicaFetchResponse(results=results)

    monkeypatch.setattr(fetcher_module, "FetchStream", FakeStream)
    clock = Clock()
    throttles = throttle.ReplicationThrottles(2, clock)
    config = throttle.ThrottleConfig(None, 1000, {}, {"out": frozenset({(0, 2)})})
    throttles.update(0, lambda: config)
    manager = SimpleNamespace(
        _broker_epoch=lambda: 7,
        cluster_id="c",
        broker_id=2,
        supervisor=TaskSupervisor(),
        throttle_config=lambda: config,
        throttles=throttles,
        replica_lag_time_max_ms=lambda: 10_000,
    )

    start_at = [0]

    async def until_asked(count: int, fetcher) -> None:
        for _ in range(10_000):  # bounded: a fetcher whose loops ended would never get there
            if len(asked) >= count:
                return
            assert not any(task.done() for task in fetcher._tasks), "a fetch loop ended"
            await asyncio.sleep(0.005)
        raise AssertionError(f"the fetcher sent {len(asked)} requests, not {count}")

    async def scenario():
        fetcher = fetcher_module.ReplicaFetcher(manager, 1, SimpleNamespace(channel=lambda broker_id: None))
        fetcher.add(in_sync)
        fetcher.add(moving)
        fetcher.start()
        try:
            await until_asked(10, fetcher)
            clock.now_s += 1.0  # one second of the rate: 1000 bytes
            start = start_at[0] = len(asked)
            await until_asked(start + 20, fetcher)
        finally:
            await fetcher.stop()

    asyncio.run(scenario())
    # The in-sync partition is asked for all along (by the idle loop: it receives no records);
    # requests without it are the active loop's, naming only the partition that received records.
    assert all(in_sync.topic_id in request or set(request) == {moving.topic_id} for request in asked)
    assert sum(in_sync.topic_id in request for request in asked[start_at[0] :]) >= 10
    limits = [request[moving.topic_id] for request in asked if moving.topic_id in request]
    assert limits[:2] == [1000, 1000 - len(b"0|0|") - 595], limits  # what the bucket held, then the rest
    assert len(limits) == 2, "the bucket is in debt after the second answer: no more fetches for it"
    assert throttles.throttled_bytes["follower"] == 2 * (len(b"0|0|") + 595)  # paid for what arrived
    assert moving.log.log_end_offset == 2
