"""A poll that hands out the last records buffered for a partition sends that partition's next
fetch before it returns (Kafka's consumer pipelining), so the leader reads the next records while
the caller handles these; a partition with records left buffered is not fetched ahead, so the
buffer never holds more than a fetch per partition."""

import asyncio

from raftlog.client import AsyncConsumer, TopicPartition
from raftlog.log.record_batch import encode_batch, read_header, set_base_offset
from raftlog.v1 import broker_pb2
from tests.unit.stub_broker import StubBroker

TP = TopicPartition("t", 0)
BATCH_RECORDS = 10
BATCHES = 3


class _OneBatchPerFetch(StubBroker):
    """Answers each Fetch with the one batch at its offset (as a small partition_max_bytes
    would) and records the offsets fetched; with nothing there it waits out the long poll."""

    def __init__(self):
        super().__init__({TP.topic: 1})
        self.fetched_offsets: list[int] = []
        for n in range(BATCHES):
            batch = bytearray(encode_batch([(None, b"v%d" % i, None, 1_000 + i) for i in range(BATCH_RECORDS)]))
            set_base_offset(batch, 0, n * BATCH_RECORDS)
            self.stored[(TP.topic, TP.partition)].append(bytes(batch))
        self._log_end[(TP.topic, TP.partition)] = BATCHES * BATCH_RECORDS

    async def Fetch(self, request, context):
        [p] = request.partitions
        self.fetched_offsets.append(p.fetch_offset)
        at = [b for b in self.stored[(p.topic, p.partition)] if read_header(b).base_offset == p.fetch_offset]
        if not at:
            await asyncio.sleep(request.max_wait_ms / 1000.0)
        result = broker_pb2.FetchPartitionResult(
            topic=p.topic, partition=p.partition, high_watermark=BATCHES * BATCH_RECORDS, records=b"".join(at)
        )
        return broker_pb2.FetchResponse(results=[result])


def _run(max_poll_records: int, scenario) -> None:
    async def main():
        broker = _OneBatchPerFetch()
        await broker.start()
        consumer = AsyncConsumer(broker.address, max_poll_records=max_poll_records, fetch_max_wait_ms=5_000)
        consumer.assign([TP])
        try:
            await scenario(consumer, broker)
        finally:
            await consumer.close()
            await broker.stop()

    asyncio.run(main())


async def _settled(broker: _OneBatchPerFetch, fetches: int) -> list[int]:
    """The offsets fetched once `fetches` fetches have arrived, or after a bounded wait (so a
    fetch that should not come has had every chance to)."""
    for _ in range(50):
        if len(broker.fetched_offsets) >= fetches:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return list(broker.fetched_offsets)


def test_a_poll_that_empties_the_buffer_has_sent_the_next_fetch_when_it_returns():
    async def scenario(consumer, broker):
        first = await consumer.poll(timeout_ms=5_000)
        assert [r.offset for r in first] == list(range(BATCH_RECORDS))
        # No poll runs meanwhile: the fetch of offset 10 went out from the poll that returned.
        assert await _settled(broker, 2) == [0, BATCH_RECORDS]
        second = await consumer.poll(timeout_ms=5_000)
        assert [r.offset for r in second] == list(range(BATCH_RECORDS, 2 * BATCH_RECORDS))
        assert await _settled(broker, 3) == [0, BATCH_RECORDS, 2 * BATCH_RECORDS]

    _run(100, scenario)


def test_a_partition_with_records_left_buffered_is_not_fetched_ahead():
    async def scenario(consumer, broker):
        offsets = []
        for _ in range(2):  # 4 and 4 of the batch's 10: 2 left buffered
            offsets += [r.offset for r in await consumer.poll(timeout_ms=5_000)]
            assert await _settled(broker, 2) == [0]
        offsets += [r.offset for r in await consumer.poll(timeout_ms=5_000)]  # the last 2
        assert offsets == list(range(BATCH_RECORDS))
        assert await _settled(broker, 2) == [0, BATCH_RECORDS]

    _run(4, scenario)


def test_poll_batches_fetches_ahead_only_for_partitions_it_hands_out_in_full():
    async def scenario(consumer, broker):
        [batch] = await consumer.poll_batches(timeout_ms=5_000, max_records=3)  # a whole batch of 10
        assert (batch.first_offset, batch.record_count) == (0, BATCH_RECORDS)
        assert await _settled(broker, 2) == [0, BATCH_RECORDS]

    _run(100, scenario)
