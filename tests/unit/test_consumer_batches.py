"""poll() and poll_batches() over the same fetched batches: lazy batches hand out the records
poll() would, counted from their headers, and the two can be mixed without losing or repeating
a record (the stub broker answers every Fetch with the whole log, so batches before the
position come back and must be skipped or trimmed)."""

import asyncio

from raftlog.client import AsyncConsumer, ConsumerBatch, TopicPartition
from raftlog.log.record_batch import encode_batch, set_base_offset
from tests.unit.stub_broker import StubBroker

TP = TopicPartition("t", 0)
BATCH_SIZES = [5, 7, 1, 12, 6]  # 31 records at offsets 0..30


def stored_log() -> list[bytes]:
    batches, offset = [], 0
    for size in BATCH_SIZES:
        batch = bytearray(
            encode_batch([(None, f"v{offset + i}".encode(), None, 1000 + offset + i) for i in range(size)])
        )
        set_base_offset(batch, 0, offset)
        batches.append(bytes(batch))
        offset += size
    return batches


def run(scenario) -> None:
    async def main():
        broker = StubBroker({"t": 1})
        await broker.start()
        broker.stored[("t", 0)] = stored_log()
        broker._log_end[("t", 0)] = sum(BATCH_SIZES)
        consumer = AsyncConsumer(broker.address, max_poll_records=4, fetch_max_wait_ms=50)
        consumer.assign([TP])
        try:
            await scenario(consumer)
        finally:
            await consumer.close()
            await broker.stop()

    asyncio.run(main())


def test_poll_batches_counts_from_headers_and_iterates_the_same_records_as_poll():
    async def scenario(consumer):
        batches: list[ConsumerBatch] = await consumer.poll_batches(timeout_ms=2000)
        assert [b.record_count for b in batches] == BATCH_SIZES
        assert [(b.first_offset, b.last_offset) for b in batches] == [(0, 4), (5, 11), (12, 12), (13, 24), (25, 30)]
        values = [r.value for b in batches for r in b]
        assert values == [f"v{i}".encode() for i in range(31)]
        assert await consumer.position(TP) == 31

    run(scenario)


def test_mixing_poll_and_poll_batches_after_a_seek_into_a_batch_loses_and_repeats_nothing():
    async def scenario(consumer):
        consumer.seek(TP, 8)  # inside the second batch (5..11): it is trimmed to 8..11
        seen = [r.offset for r in await consumer.poll(timeout_ms=2000)]
        assert seen == [8, 9, 10, 11]  # max_poll_records=4
        assert await consumer.position(TP) == 12
        [first, *rest] = await consumer.poll_batches(timeout_ms=2000, max_records=1)
        assert rest == [] and (first.first_offset, first.record_count) == (12, 1)
        seen += [r.offset for r in first]
        seen += [r.offset for r in await consumer.poll(timeout_ms=2000)]  # 13..16 of the 12-record batch
        [remainder, *later] = await consumer.poll_batches(timeout_ms=2000)
        assert (remainder.first_offset, remainder.record_count) == (17, 8)  # what poll() left of the batch
        seen += [r.offset for b in [remainder, *later] for r in b]
        assert seen == list(range(8, 31))
        assert await consumer.poll_batches(timeout_ms=100) == []  # the whole log again: all before the position

    run(scenario)
