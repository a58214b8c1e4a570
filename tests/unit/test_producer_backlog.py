"""The producer after a stall (issue 9 §7): batches grow with the backlog, partitions of one leader
share a request, and the records waiting are bounded by buffer.memory (send() waits up to
max.block.ms for room, then fails)."""

import asyncio
import threading
import time

import pytest

from raftlog.client import AsyncProducer, Producer
from raftlog.errors import Errors, RaftlogError
from tests.unit.stub_broker import StubBroker

PARTITIONS = 3
STALLED_RECORDS = 300


def test_records_queued_behind_a_stalled_leader_go_out_in_large_batches_and_are_all_acknowledged():
    async def scenario():
        broker = StubBroker({"t": PARTITIONS})
        await broker.start()
        producer = AsyncProducer(broker.address, acks="all", linger_ms=2)
        try:
            broker.produce_open.clear()  # the leader stalls (a paused process, say)
            futures = []
            for i in range(STALLED_RECORDS):  # a trickle: every record waits out its linger alone
                futures.append(await producer.send("t", b"v%05d" % i, partition=i % PARTITIONS))
                await asyncio.sleep(0.004)
            sent_during_stall = len(broker.produce_requests)
            broker.produce_open.set()
            metadata = [await future for future in futures]
            after_stall = broker.records_per_request()[sent_during_stall:]
            # Before the fix each lingered record was a batch of its own, sent one by one after
            # the stall (~1 record per request); now what queued up goes out in a few batches.
            assert sum(after_stall) + sum(broker.records_per_request()[:sent_during_stall]) == STALLED_RECORDS
            assert len(after_stall) <= 6, f"{len(after_stall)} requests after the stall: {after_stall}"
            assert sum(after_stall) / len(after_stall) >= 30, after_stall
            for p in range(PARTITIONS):  # every record acknowledged, in order, with its offset
                offsets = [m.offset for m in metadata if m.partition == p]
                assert offsets == list(range(len(offsets)))
        finally:
            broker.produce_open.set()
            await producer.close()
            await broker.stop()

    asyncio.run(scenario())


def test_partitions_of_one_leader_ready_together_share_one_request():
    async def scenario():
        broker = StubBroker({"t": PARTITIONS})
        await broker.start()
        producer = AsyncProducer(broker.address, acks="all", linger_ms=60_000)
        try:
            futures = [await producer.send("t", b"v", partition=p) for p in range(PARTITIONS)]
            await producer.flush()
            assert [(await f).partition for f in futures] == list(range(PARTITIONS))
            assert [sorted(p.partition for p in r.partitions) for r in broker.produce_requests] == [[0, 1, 2]]
        finally:
            await producer.close()
            await broker.stop()

    asyncio.run(scenario())


def test_send_waits_for_room_in_buffer_memory_then_fails_with_max_block_ms():
    loop = asyncio.new_event_loop()
    broker = StubBroker({"t": 1})
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(10)
    loop.call_soon_threadsafe(broker.produce_open.clear)
    producer = Producer(
        broker.address, acks="all", linger_ms=1, batch_size=4096, buffer_memory=20_000, max_block_ms=300
    )
    try:
        accepted = []
        with pytest.raises(RaftlogError) as info:
            for _ in range(100):  # 100 x ~1 KB cannot fit in 20 KB
                accepted.append(producer.send("t", b"x" * 1000))
        assert info.value.error is Errors.REQUEST_TIMED_OUT and "buffer.memory=20000" in info.value.message
        assert 10 <= len(accepted) <= 20
        # Room frees up as the broker answers: a send blocked meanwhile gets in.
        blocked = threading.Thread(target=lambda: accepted.append(producer.send("t", b"y" * 1000)))
        producer_max_block_s = 0.3
        started = time.monotonic()
        blocked.start()
        blocked.join(producer_max_block_s / 3)
        assert blocked.is_alive()  # still waiting for room
        loop.call_soon_threadsafe(broker.produce_open.set)
        blocked.join(10)
        assert not blocked.is_alive() and time.monotonic() - started < producer_max_block_s + 10
        assert [f.result(10).offset for f in accepted] == list(range(len(accepted)))
    finally:
        loop.call_soon_threadsafe(broker.produce_open.set)
        producer.close(10)
        asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_async_send_waits_then_fails_when_buffer_memory_stays_full():
    async def scenario():
        broker = StubBroker({"t": 1})
        await broker.start()
        broker.produce_open.clear()
        producer = AsyncProducer(
            broker.address, acks="all", linger_ms=1, batch_size=4096, buffer_memory=20_000, max_block_ms=200
        )
        try:
            with pytest.raises(RaftlogError) as info:
                for _ in range(100):
                    await producer.send("t", b"x" * 1000)
            assert info.value.error is Errors.REQUEST_TIMED_OUT and "max.block.ms=200" in info.value.message
        finally:
            broker.produce_open.set()
            await producer.close()
            await broker.stop()

    asyncio.run(scenario())


def test_a_record_larger_than_buffer_memory_fails_at_once():
    async def scenario():
        broker = StubBroker({"t": 1})
        await broker.start()
        producer = AsyncProducer(broker.address, buffer_memory=1000)
        try:
            with pytest.raises(RaftlogError) as info:
                await producer.send("t", b"x" * 2000)
            assert info.value.error is Errors.MESSAGE_TOO_LARGE
        finally:
            await producer.close()
            await broker.stop()

    asyncio.run(scenario())


async def _answered(future, timeout_s: float = 30.0):
    """The record's metadata; a TimeoutError if it is not answered within timeout_s (shielded:
    giving up must not cancel the producer's own future)."""
    return await asyncio.wait_for(asyncio.shield(future), timeout_s)


def test_a_record_for_an_idle_partition_goes_at_once_and_linger_batches_only_behind_a_request_in_flight():
    """linger.ms holds a batch back only while a request of its partition is in flight: with nothing
    out there is no answer to batch behind, so a lone record goes at once (issue 15). The linger
    here is a minute, so the old rule (every batch waits out its linger) never answers in time."""

    async def scenario():
        broker = StubBroker({"t": 1})
        await broker.start()
        producer = AsyncProducer(broker.address, acks="all", linger_ms=60_000)
        try:
            first = await producer.send("t", b"first", partition=0)
            assert (await _answered(first)).offset == 0  # no flush, no linger
            broker.produce_open.clear()  # the next request stays in flight
            second = await producer.send("t", b"second", partition=0)
            while len(broker.produce_requests) < 2:  # it went at once: the partition was idle
                await asyncio.sleep(0.01)
            behind = [await producer.send("t", b"behind-%d" % i, partition=0) for i in range(8)]
            await asyncio.sleep(0.2)
            assert len(broker.produce_requests) == 2, "records behind a request in flight linger"
            broker.produce_open.set()
            assert (await _answered(second)).offset == 1
            # The answer leaves the partition idle: the lingering batch goes at once, whole.
            offsets = [(await _answered(f)).offset for f in behind]
            assert offsets == list(range(2, 10))
            assert broker.records_per_request() == [1, 1, 8]
        finally:
            broker.produce_open.set()
            await producer.close()
            await broker.stop()

    asyncio.run(scenario())
