"""An idempotent producer's sequences after answers it did not expect: an OUT_OF_ORDER answer with
nothing earlier out (a leader judging by sequences it no longer owns) is asked again, and after a
batch of a partition failed for good the partition's next records start a new producer epoch at
sequence 0 instead of failing forever (Kafka's KIP-360). The stub broker checks sequences with the
leader's own rules (ProducerStateTable)."""

import asyncio

import pytest

from raftlog.client import AsyncProducer
from raftlog.errors import Errors, RaftlogError
from raftlog.log.record_batch import iter_headers
from tests.unit.stub_broker import StubBroker

P0, P1 = ("t", 0), ("t", 1)


def stored_stamps(broker: StubBroker, key) -> list[tuple[int, int, int]]:
    """(producer id, epoch, base sequence) of each batch the broker appended, in log order."""
    return [
        (h.producer_id, h.producer_epoch, h.base_sequence) for data in broker.stored[key] for _, h in iter_headers(data)
    ]


def run(scenario, broker: StubBroker, **settings):
    async def main():
        await broker.start()
        producer = AsyncProducer(broker.address, acks="all", retry_backoff_ms=1, **settings)
        try:
            await scenario(producer)
        finally:
            broker.produce_open.set()
            await producer.close()
            await broker.stop()

    asyncio.run(main())


def test_an_out_of_order_answer_with_nothing_earlier_out_is_asked_again_and_acknowledged_once():
    broker = StubBroker({"t": 1})
    broker.produce_failures[P0].append(
        RaftlogError(Errors.OUT_OF_ORDER_SEQUENCE_NUMBER, "producer 1 sent sequence 0, expected 3 (a stale leader)")
    )

    async def scenario(producer):
        metadata = await (await producer.send("t", b"v", partition=0))
        assert metadata.offset == 0  # before the fix: OUT_OF_ORDER_SEQUENCE_NUMBER, the record lost
        assert stored_stamps(broker, P0) == [(1, 0, 0)]
        assert len(broker.produce_requests) == 2

    run(scenario, broker)


def test_after_a_batch_failed_for_good_its_partition_goes_on_under_a_new_epoch_and_the_others_keep_theirs():
    broker = StubBroker({"t": 2})
    broker.produce_failures[P0].append(RaftlogError(Errors.CORRUPT_MESSAGE, "injected: not retriable"))

    async def scenario(producer):
        with pytest.raises(RaftlogError) as failed:
            await (await producer.send("t", b"lost", partition=0))
        assert failed.value.error is Errors.CORRUPT_MESSAGE
        await (await producer.send("t", b"other", partition=1))
        # Before the fix each later record of partition 0 failed (sequence 1 where the broker
        # expected 0): UNKNOWN_PRODUCER_ID here, OUT_OF_ORDER_SEQUENCE_NUMBER on a known producer.
        offsets = [(await (await producer.send("t", b"v%d" % i, partition=0))).offset for i in range(3)]
        assert offsets == [0, 1, 2]
        assert stored_stamps(broker, P0) == [(1, 1, 0), (1, 1, 1), (1, 1, 2)]
        assert stored_stamps(broker, P1) == [(1, 0, 0)]

    run(scenario, broker)


def test_batches_out_behind_one_that_failed_for_good_fail_too_and_the_next_one_starts_a_new_epoch():
    broker = StubBroker({"t": 1})
    broker.produce_failures[P0].append(RaftlogError(Errors.CORRUPT_MESSAGE, "injected: not retriable"))

    async def scenario(producer):
        broker.produce_open.clear()  # both go out before either is answered
        first = await producer.send("t", b"a", partition=0)
        await asyncio.sleep(0)
        for _ in range(100):  # bounded: the sender sends the second once the first is out
            if len(broker.produce_requests) == 1:
                break
            await asyncio.sleep(0.01)
        second = await producer.send("t", b"b", partition=0)
        for _ in range(100):
            if len(broker.produce_requests) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(broker.produce_requests) == 2, "the second batch did not go out behind the first"
        broker.produce_open.set()
        for future in (first, second):
            with pytest.raises(RaftlogError):
                await future  # the second would leave a gap in the broker's sequences
        assert (await (await producer.send("t", b"c", partition=0))).offset == 0
        assert stored_stamps(broker, P0) == [(1, 1, 0)]

    run(scenario, broker, linger_ms=0)


def test_a_producer_whose_epochs_are_used_up_takes_a_new_id():
    broker = StubBroker({"t": 1})
    broker.initial_producer_epoch = 2**15 - 1
    broker.produce_failures[P0].append(RaftlogError(Errors.CORRUPT_MESSAGE, "injected: not retriable"))

    async def scenario(producer):
        with pytest.raises(RaftlogError):
            await (await producer.send("t", b"lost", partition=0))
        assert (await (await producer.send("t", b"v", partition=0))).offset == 0
        assert broker.producer_ids_issued == 2
        assert stored_stamps(broker, P0) == [(2, 2**15 - 1, 0)]

    run(scenario, broker)
