"""A metadata change costs a broker work for what it changed: a topic's own config reconfigures
that topic's partitions only; a broker default (which every topic may follow) reconfigures all."""

import asyncio

from raftlog.metadata import records
from raftlog.replication.manager import reconcile_scope
from raftlog.v1 import metadata_pb2
from tests.unit.fake_replica_log import FakeReplicaLog
from tests.unit.replica_manager_harness import FakeStateMachine, make_manager, register

ORDERS, AUDIT = b"O" * 16, b"A" * 16


def _batch(*metadata_records) -> metadata_pb2.MetadataBatch:
    return metadata_pb2.MetadataBatch(records=list(metadata_records))


def test_a_topic_config_names_its_topic_and_a_broker_config_makes_the_round_whole():
    topic_config = records.config("topics", "orders", "retention.ms", "1000")
    assert reconcile_scope(_batch(topic_config)) == (False, frozenset(), frozenset({"orders"}))
    broker_config = records.config("brokers", "", "log.retention.hours", "10")
    assert reconcile_scope(_batch(topic_config, broker_config))[0] is True
    assert reconcile_scope(None)[0] is True, "a restored snapshot"
    assert reconcile_scope(_batch(records.remove_topic(ORDERS)))[0] is True
    assert reconcile_scope(_batch(records.no_op())) is None
    partition = records.partition(ORDERS, 2, [1], 1)
    assert reconcile_scope(_batch(partition)) == (False, frozenset({(ORDERS, 2)}), frozenset())


def test_altering_one_topics_config_reconfigures_its_partitions_only():
    async def scenario():
        state_machine = FakeStateMachine()
        register(state_machine, 1)
        state_machine.apply(
            records.topic("orders", ORDERS),
            *(records.partition(ORDERS, i, [1], 1) for i in range(3)),
            records.topic("audit", AUDIT),
            *(records.partition(AUDIT, i, [1], 1) for i in range(3)),
        )
        logs: dict = {}

        def open_log(topic: str, partition: int, config) -> FakeReplicaLog:
            log = logs[(topic, partition)] = FakeReplicaLog()
            log.config = config  # what an opened PartitionReplicaLog holds
            return log

        manager = make_manager(1, state_machine, log_factory=open_log)
        await manager.reconcile()
        configs = {key: log.config for key, log in logs.items()}
        versions = {key: p.version for key, p in manager.partitions.items()}

        batch = _batch(records.config("topics", "orders", "retention.ms", "1000"))
        state_machine.apply(*batch.records)
        whole, changed, topics = reconcile_scope(batch)
        manager._topic_settings.clear()  # as the reconcile loop does before each round
        await manager.reconcile(whole, changed, topics)

        for (topic, index), log in logs.items():
            if topic == "orders":
                assert log.config.retention_ms == 1000 != configs[(topic, index)].retention_ms
            else:
                assert log.config is configs[(topic, index)], f"{topic}-{index} was not touched"
        woken = {manager.partitions[key].name for key in versions if manager.partitions[key].version != versions[key]}
        assert woken == {"orders-0", "orders-1", "orders-2"}, "only the altered topic's waiters are woken"

        state_machine.apply(records.config("brokers", "", "log.retention.hours", "10"))
        manager._topic_settings.clear()
        await manager.reconcile(True)
        audit = logs[("audit", 0)].config
        assert audit.retention_ms == 10 * 3600 * 1000, "a broker default reaches every topic that follows it"

    asyncio.run(scenario())
