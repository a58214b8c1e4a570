"""A retried idempotent batch is answered like its original append: never before acks allows."""

import asyncio

import pytest

from raftlog.errors import RaftlogError
from raftlog.log import LogConfig
from raftlog.log.record_batch import encode_batch
from raftlog.metadata.image import PartitionInfo
from raftlog.replication.log_adapter import PartitionReplicaLog
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition

TOPIC_ID = b"T" * 16


def test_a_retried_duplicate_is_acknowledged_only_once_the_isr_has_it(tmp_path):
    async def scenario():
        leader = Partition("t", TOPIC_ID, 0, 1, PartitionReplicaLog(tmp_path / "t-0", LogConfig()),
                           ChangeNotifier(), clock_ms=lambda: 0.0)
        leader.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (1, 2), 1, 0, 0))
        leader.become_leader()
        batch = encode_batch([(b"k", b"v", None, 0)], producer_id=7, producer_epoch=0, base_sequence=0)
        for attempt in ("original", "retry"):  # the follower is not fetching: neither may succeed
            with pytest.raises(RaftlogError) as failure:
                await leader.append_as_leader(batch, acks=-1, timeout_ms=50, min_isr=2)
            assert failure.value.reason == "REQUEST_TIMED_OUT", attempt
        assert leader.log.log_end_offset == 1  # written once
        leader.read_for_follower(2, 1, 0, 0, 1 << 20)  # the follower now has offset 0
        outcome = await leader.append_as_leader(batch, acks=-1, timeout_ms=50, min_isr=2)
        assert (outcome.base_offset, outcome.record_count, leader.log.log_end_offset) == (0, 0, 1)
        leader.log.close()

    asyncio.run(scenario())
