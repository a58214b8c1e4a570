"""Python client for raftlog: Admin, Producer and Consumer (sync), AsyncProducer and AsyncConsumer."""

from raftlog.client.admin import Admin
from raftlog.client.consumer import (
    AsyncConsumer,
    Consumer,
    ConsumerBatch,
    ConsumerRecord,
    TopicPartition,
)
from raftlog.client.producer import AsyncProducer, Producer, RecordMetadata
from raftlog.errors import RaftlogError

__all__ = [
    "Admin",
    "AsyncConsumer",
    "AsyncProducer",
    "Consumer",
    "ConsumerBatch",
    "ConsumerRecord",
    "Producer",
    "RaftlogError",
    "RecordMetadata",
    "TopicPartition",
]
