"""A consumer of partitions on two leaders hands out one leader's records while its fetch to the
other leader is still out (a long poll with nothing to answer): Kafka's fetcher, where each
broker's fetch goes on by itself. Fetching all leaders as one round made every answer wait for
the slowest long poll."""

import asyncio
import time

from raftlog.client import AsyncConsumer, TopicPartition
from raftlog.log.record_batch import encode_batch, set_base_offset
from raftlog.v1 import broker_pb2
from tests.unit.stub_broker import StubBroker

TOPIC = "t"


class _TwoLeaderBroker(StubBroker):
    """Partition 0 led by broker 1, partition 1 by broker 2; each stub answers for its own."""

    def __init__(self, broker_id: int, ports: dict[int, int]):
        super().__init__({TOPIC: 2})
        self.broker_id = broker_id
        self.ports = ports  # broker id -> port, filled in once both are listening
        self.fetches_answered = 0
        self.fetches_abandoned = 0  # the client gave up waiting (its timeout cancelled the call)
        self.answer_empty_fetches = asyncio.Event()  # unset: an empty long poll waits for it

    async def Metadata(self, request, context):
        return broker_pb2.MetadataResponse(
            brokers=[broker_pb2.BrokerEndpoint(broker_id=b, host="127.0.0.1", port=p) for b, p in self.ports.items()],
            topics=[
                broker_pb2.TopicMetadata(
                    name=TOPIC,
                    topic_id=TOPIC.encode().ljust(16, b"-"),
                    partitions=[
                        broker_pb2.PartitionMetadata(
                            partition=i, leader=i + 1, leader_epoch=0, replicas=[i + 1], isr=[i + 1]
                        )
                        for i in range(2)
                    ],
                )
            ],
        )

    def store(self, partition: int, offset: int, value: bytes) -> None:
        batch = bytearray(encode_batch([(None, value, None, int(time.time() * 1000))]))
        set_base_offset(batch, 0, offset)
        self.stored[(TOPIC, partition)].append(bytes(batch))
        self._log_end[(TOPIC, partition)] = offset + 1

    async def Fetch(self, request, context):
        results = []
        for p in request.partitions:
            batches = self.stored[(p.topic, p.partition)][p.fetch_offset :]
            results.append(
                broker_pb2.FetchPartitionResult(
                    topic=p.topic,
                    partition=p.partition,
                    high_watermark=self._log_end[(p.topic, p.partition)],
                    records=b"".join(batches),
                )
            )
        if not any(r.records for r in results):
            try:
                await self.answer_empty_fetches.wait()
            except asyncio.CancelledError:
                self.fetches_abandoned += 1
                raise
        self.fetches_answered += 1
        return broker_pb2.FetchResponse(results=results)


def test_one_leaders_records_do_not_wait_for_another_leaders_long_poll():
    async def scenario():
        ports: dict[int, int] = {}
        first, second = _TwoLeaderBroker(1, ports), _TwoLeaderBroker(2, ports)
        for broker in (first, second):
            await broker.start()
            ports[broker.broker_id] = broker.port
        consumer = AsyncConsumer(first.address, fetch_max_wait_ms=30_000, request_timeout_ms=60_000)
        try:
            consumer.assign([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
            await consumer.seek_to_beginning(TopicPartition(TOPIC, 0))
            await consumer.seek_to_beginning(TopicPartition(TOPIC, 1))
            first.store(0, 0, b"a")
            got = await consumer.poll(20_000)
            assert [(r.partition, r.offset, r.value) for r in got] == [(0, 0, b"a")]
            first.store(0, 1, b"b")  # while broker 2's long poll is still out
            got = await consumer.poll(20_000)
            assert [(r.partition, r.offset, r.value) for r in got] == [(0, 1, b"b")]
            # Broker 2's long poll is still out, neither answered nor given up on: nothing waited for it.
            assert (second.fetches_answered, second.fetches_abandoned) == (0, 0)
            second.store(1, 0, b"c")
            second.answer_empty_fetches.set()  # its long poll ends (empty); the next fetch brings "c"
            got = []
            for _ in range(5):
                got += await consumer.poll(20_000)
                if any(r.partition == 1 for r in got):
                    break
            assert [(r.partition, r.offset, r.value) for r in got if r.partition == 1] == [(1, 0, b"c")]
        finally:
            first.answer_empty_fetches.set()
            second.answer_empty_fetches.set()
            await consumer.close()
            for broker in (first, second):
                await broker.stop()

    asyncio.run(scenario())
