import pytest

from raftlog.controller import decisions
from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.v1 import admin_pb2, metadata_pb2

TIMEOUT_MS = 1000


def image_with_broker(epoch=5, fenced=True):
    image = MetadataImage()
    image.apply_batch(epoch, metadata_pb2.MetadataBatch(records=[records.register_broker(1, "inc", "h", 9)]))
    if not fenced:
        image.apply_batch(epoch + 1, metadata_pb2.MetadataBatch(records=[records.broker_fencing(1, epoch, False)]))
    return image


def test_heartbeat_unfences_only_once_caught_up():
    image = image_with_broker(epoch=5)
    assert decisions.broker_heartbeat(image, 1, 5, metadata_offset=4, want_fence=False) == []
    [record] = decisions.broker_heartbeat(image, 1, 5, metadata_offset=5, want_fence=False)
    assert record.broker_fencing.fenced is False


def test_heartbeat_with_stale_epoch_or_unknown_broker():
    image = image_with_broker(epoch=5)
    with pytest.raises(RaftlogError) as info:
        decisions.broker_heartbeat(image, 1, 4, 10, False)
    assert info.value.reason == "STALE_BROKER_EPOCH"
    with pytest.raises(RaftlogError) as info:
        decisions.broker_heartbeat(image, 2, 5, 10, False)
    assert info.value.reason == "UNKNOWN_BROKER"


def test_session_expiry_fences_only_silent_unfenced_brokers():
    image = image_with_broker(epoch=5, fenced=False)
    sessions = decisions.BrokerSessions()
    sessions.reset([1], now_ms=0)
    assert decisions.fence_expired(image, sessions, now_ms=999, session_timeout_ms=TIMEOUT_MS) == []
    [record] = decisions.fence_expired(image, sessions, now_ms=1000, session_timeout_ms=TIMEOUT_MS)
    assert (record.broker_fencing.broker_id, record.broker_fencing.fenced) == (1, True)


def test_a_new_controller_runs_the_replaced_leaders_session_from_its_last_contact():
    image = image_with_broker(epoch=5, fenced=False)
    sessions = decisions.BrokerSessions()
    # Took over at t=700; the old leader (broker 1) last spoke at t=200.
    sessions.reset([1], now_ms=700, silent_since_ms={1: 200})
    assert decisions.fence_expired(image, sessions, now_ms=1199, session_timeout_ms=TIMEOUT_MS) == []
    [record] = decisions.fence_expired(image, sessions, now_ms=1200, session_timeout_ms=TIMEOUT_MS)
    assert record.broker_fencing.broker_id == 1
    # A contact time in the future (clock skew between readings) never extends the session.
    sessions.reset([1], now_ms=700, silent_since_ms={1: 900})
    assert decisions.fence_expired(image, sessions, now_ms=1700, session_timeout_ms=TIMEOUT_MS)


def test_a_second_live_process_with_the_same_id_is_refused():
    image = image_with_broker(epoch=5, fenced=False)
    sessions = decisions.BrokerSessions()
    sessions.touch(1, now_ms=100)
    with pytest.raises(RaftlogError) as info:
        decisions.register_broker(image, 1, "other", "h", 9, "", sessions, 200, TIMEOUT_MS)
    assert info.value.reason == "DUPLICATE_BROKER_REGISTRATION"
    # once the old session has expired, the restarted process may take the id over
    assert decisions.register_broker(image, 1, "other", "h", 9, "", sessions, 1200, TIMEOUT_MS)


def test_alter_configs_validates_every_op():
    image = image_with_broker()
    resource = admin_pb2.ConfigResource(type="brokers", name="")
    set_op = admin_pb2.AlterConfigOp(name="log.retention.hours", value="72")
    [record] = decisions.alter_configs(image, resource, [set_op])
    assert (record.config.name, record.config.value) == ("log.retention.hours", "72")
    bad_cases = [
        (resource, [admin_pb2.AlterConfigOp(name="log.retention.hours", value="soon")], "INVALID_CONFIG"),
        (resource, [admin_pb2.AlterConfigOp(name="node.id", value="3")], "INVALID_CONFIG"),
        (resource, [set_op, set_op], "INVALID_REQUEST"),
        (resource, [], "INVALID_REQUEST"),
        (admin_pb2.ConfigResource(type="brokers", name="7"), [set_op], "UNKNOWN_BROKER"),
        (admin_pb2.ConfigResource(type="topics", name="t"), [set_op], "UNKNOWN_TOPIC_OR_PARTITION"),
        (admin_pb2.ConfigResource(type="users", name=""), [set_op], "INVALID_REQUEST"),
    ]
    for res, ops, reason in bad_cases:
        with pytest.raises(RaftlogError) as info:
            decisions.alter_configs(image, res, ops)
        assert info.value.reason == reason


def test_a_replica_reported_offline_loses_leadership_and_leaves_the_isr():
    """A broker whose log dir failed reports its replicas in its heartbeat: the controller moves
    their leadership inside the ISR and takes the replica out of the ISR; a last ISR member
    stays (the partition is offline until it returns) but does not lead."""
    image = MetadataImage()
    offset = 1
    epochs = {}
    for broker in (1, 2, 3):
        epochs[broker] = offset
        image.apply_batch(offset, metadata_pb2.MetadataBatch(records=[records.register_broker(broker, "i", "h", 9)]))
        image.apply_batch(
            offset + 1, metadata_pb2.MetadataBatch(records=[records.broker_fencing(broker, offset, False)])
        )
        offset += 2
    shared, alone = b"A" * 16, b"B" * 16
    image.apply_batch(
        offset,
        metadata_pb2.MetadataBatch(
            records=[
                records.topic("shared", shared),
                records.partition(shared, 0, [1, 2, 3], 1),
                records.topic("alone", alone),
                records.partition(alone, 0, [1, 2], 1),
                records.partition_change(alone, 0, isr=[1]),
            ]
        ),
    )
    offline = frozenset({(shared, 0), (alone, 0)})
    new_records = decisions.broker_heartbeat(
        image, 1, epochs[1], metadata_offset=offset, want_fence=False, offline_replicas=offline
    )
    image.apply_batch(offset + 1, metadata_pb2.MetadataBatch(records=new_records))
    shared_now = image.topic("shared").partitions[0]
    alone_now = image.topic("alone").partitions[0]
    assert (shared_now.leader, shared_now.isr) == (2, (2, 3))
    assert (alone_now.leader, alone_now.isr) == (-1, (1,))
    assert (
        decisions.broker_heartbeat(
            image, 1, epochs[1], metadata_offset=offset + 1, want_fence=False, offline_replicas=offline
        )
        == []
    ), "nothing more to do"


def test_a_replica_reported_offline_is_not_elected_when_another_broker_returns():
    """The last ISR member reported its replica offline (the partition is leaderless). When
    another replica's broker is unfenced, the controller must not hand the leadership back to
    the broker that cannot serve it."""
    image = MetadataImage()
    for broker in (1, 2):
        image.apply_batch(
            broker * 2 - 1, metadata_pb2.MetadataBatch(records=[records.register_broker(broker, "i", "h", 9)])
        )
        image.apply_batch(
            broker * 2, metadata_pb2.MetadataBatch(records=[records.broker_fencing(broker, broker * 2 - 1, False)])
        )
    topic_id = b"P" * 16
    image.apply_batch(
        5,
        metadata_pb2.MetadataBatch(
            records=[
                records.topic("p", topic_id),
                records.partition(topic_id, 0, [1, 2], 1),
                records.partition_change(topic_id, 0, isr=[1]),
                records.broker_fencing(2, 3, True),
            ]
        ),
    )
    offline = decisions.OfflineReplicas()
    offline.report(1, frozenset({(topic_id, 0)}))
    image.apply_batch(
        6,
        metadata_pb2.MetadataBatch(
            records=decisions.broker_heartbeat(
                image, 1, 1, 6, False, offline_replicas=frozenset({(topic_id, 0)}), offline=offline
            )
        ),
    )
    assert (image.topic("p").partitions[0].leader, image.topic("p").partitions[0].isr) == (-1, (1,))
    image.apply_batch(
        7, metadata_pb2.MetadataBatch(records=decisions.broker_heartbeat(image, 2, 3, 7, False, offline=offline))
    )  # broker 2 comes back and is unfenced
    assert image.brokers[2].fenced is False
    assert image.topic("p").partitions[0].leader == -1, "not broker 1: it reported it cannot serve the partition"
