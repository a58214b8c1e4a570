"""A producer whose sender task fails (a bug: it handles every error a broker can give) fails what
it holds and every later send at once, instead of leaving them waiting forever."""

import asyncio

import pytest

from raftlog.client import AsyncProducer, Producer
from raftlog.client import producer as producer_module
from raftlog.errors import Errors, RaftlogError
from tests.unit.stub_broker import StubBroker


def _failing_seal(monkeypatch, after: int) -> None:
    """The sender's `after`+1-th seal raises (as a broken invariant's assertion would)."""
    seal = producer_module._Sender._seal
    calls = {"n": 0}

    def broken(self, batch):
        calls["n"] += 1
        if calls["n"] > after:
            raise AssertionError("an invariant broke")
        return seal(self, batch)

    monkeypatch.setattr(producer_module._Sender, "_seal", broken)


def test_records_of_a_failed_sender_fail_at_once_and_so_does_every_later_send(monkeypatch):
    _failing_seal(monkeypatch, after=1)

    async def scenario():
        broker = StubBroker({"t": 2})
        await broker.start()
        producer = AsyncProducer(broker.address, acks="all", linger_ms=0)
        try:
            first = await producer.send("t", b"ok", partition=0)
            assert (await asyncio.wait_for(first, 10)).offset == 0
            broker.produce_open.clear()  # what follows stays in the accumulator a while
            waiting = [await producer.send("t", b"v%d" % i, partition=i % 2) for i in range(20)]
            broker.produce_open.set()
            outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
            assert all(isinstance(o, RaftlogError) for o in outcomes), outcomes
            assert outcomes[0].error is Errors.UNKNOWN_SERVER_ERROR
            assert "sender failed: AssertionError: an invariant broke" in outcomes[0].message
            with pytest.raises(RaftlogError) as later:
                await producer.send("t", b"after", partition=1)
            assert "sender failed" in later.value.message
            await asyncio.wait_for(producer.flush(), 10)
        finally:
            broker.produce_open.set()
            await asyncio.wait_for(producer.close(), 10)
            await broker.stop()

    asyncio.run(scenario())


def test_the_sync_producer_fails_its_sends_too(monkeypatch):
    _failing_seal(monkeypatch, after=0)

    async def start():
        broker = StubBroker({"t": 1})
        await broker.start()
        return broker

    loop = asyncio.new_event_loop()
    try:
        import threading

        broker = loop.run_until_complete(start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        with Producer(broker.address, acks="all", linger_ms=0) as producer:
            with pytest.raises(RaftlogError) as failed:
                producer.send("t", b"v").result(timeout=10)
            assert "sender failed" in failed.value.message
            with pytest.raises(RaftlogError):
                producer.send("t", b"w")
            producer.flush(timeout_s=10)
        asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
