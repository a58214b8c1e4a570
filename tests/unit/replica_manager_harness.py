"""A ReplicaManager over an in-memory metadata image and in-memory logs, with no network:
enough to drive requests.py (produce, fetch, replica fetch) against the real rules."""

from __future__ import annotations

from raftlog.config import load_config
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.replication.manager import ReplicaManager
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import metadata_pb2
from tests.unit.fake_replica_log import FakeReplicaLog

CLUSTER_ID = "test-cluster"
VOTERS = "1@127.0.0.1:19091,2@127.0.0.1:19092,3@127.0.0.1:19093"


class FakeStateMachine:
    def __init__(self) -> None:
        self.image = MetadataImage()
        self.next_offset = 1

    def add_listener(self, listener) -> None:
        pass

    def apply(self, *metadata_records) -> int:
        """Applies one batch; returns its offset (a broker registered in it has that epoch)."""
        offset = self.next_offset
        self.image.apply_batch(offset, metadata_pb2.MetadataBatch(records=list(metadata_records)))
        self.next_offset += 1
        return offset


def register(state_machine: FakeStateMachine, broker_id: int) -> int:
    """Registers and unfences a broker; returns its broker epoch."""
    epoch = state_machine.apply(
        records.register_broker(broker_id, f"incarnation-{state_machine.next_offset}", "127.0.0.1", 9000 + broker_id)
    )
    state_machine.apply(records.broker_fencing(broker_id, epoch, False))
    return epoch


def make_manager(
    broker_id: int,
    state_machine: FakeStateMachine,
    logs: dict | None = None,
    log_factory=None,
    environ: dict[str, str] | None = None,
) -> ReplicaManager:
    config = load_config(
        None,
        environ={
            "RAFTLOG_NODE_ID": str(broker_id),
            "RAFTLOG_CONTROLLER_QUORUM_VOTERS": VOTERS,
            "RAFTLOG_LOG_DIRS": "/nonexistent-raftlog-test",
            **(environ or {}),
        },
    )
    logs = {} if logs is None else logs

    def fake_log_factory(topic: str, partition: int, configs) -> FakeReplicaLog:
        return logs.setdefault((topic, partition), FakeReplicaLog())

    return ReplicaManager(
        broker_id,
        CLUSTER_ID,
        config,
        state_machine,
        peers=None,
        broker_epoch=lambda: None,
        controller=None,
        log_factory=log_factory or fake_log_factory,
        tasks=TaskSupervisor(),
    )
