from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.metadata.state_machine import MetadataStateMachine
from raftlog.v1 import metadata_pb2


def batch(*recs):
    return metadata_pb2.MetadataBatch(records=list(recs))


def test_registration_sets_epoch_and_starts_fenced():
    image = MetadataImage()
    image.apply_batch(7, batch(records.register_broker(1, "inc-a", "127.0.0.1", 19091)))
    broker = image.brokers[1]
    assert (broker.epoch, broker.fenced, broker.address) == (7, True, "127.0.0.1:19091")
    image.apply_batch(8, batch(records.broker_fencing(1, 7, fenced=False)))
    assert not image.brokers[1].fenced


def test_fencing_with_a_stale_epoch_is_ignored():
    image = MetadataImage()
    image.apply_batch(3, batch(records.register_broker(1, "old", "h", 1)))
    image.apply_batch(9, batch(records.register_broker(1, "new", "h", 1)))
    image.apply_batch(10, batch(records.broker_fencing(1, 3, fenced=False)))
    assert image.brokers[1].fenced and image.brokers[1].incarnation_id == "new"


def test_configs_set_and_delete():
    image = MetadataImage()
    image.apply_batch(
        1,
        batch(
            records.config("brokers", "", "log.retention.hours", "72"),
            records.config("brokers", "2", "num.partitions", "3"),
        ),
    )
    image.apply_batch(2, batch(records.config("brokers", "2", "num.partitions", None)))
    assert image.dynamic_config("brokers", "") == {"log.retention.hours": "72"}
    assert image.dynamic_config("brokers", "2") == {}
    assert image.offset == 2


def test_snapshot_round_trip_restores_everything():
    machine = MetadataStateMachine()
    machine.apply(5, 1, records.encode_batch(records.register_broker(2, "i", "h", 9, rack="r1")))
    machine.apply(
        6,
        1,
        records.encode_batch(
            records.broker_fencing(2, 5, False), records.config("brokers", "", "min.insync.replicas", "2")
        ),
    )
    data = machine.snapshot()
    other = MetadataStateMachine()
    other.restore(data, 6, 1)
    assert other.image.brokers == machine.image.brokers
    assert other.image.configs == machine.image.configs
    assert other.snapshot() == data
