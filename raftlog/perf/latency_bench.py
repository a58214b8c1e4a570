"""`raftlog perf latency`: acks=all write latency one at a time, at a fixed rate, and end to end.

- one-at-a-time: each record is sent and its acknowledgement awaited before the next is sent;
  latency = send() to acknowledgement.
- fixed-rate: record i is due at start + i / rate; latency = from when it was *due* (not when it
  was sent) to its acknowledgement, so a stall that delays later sends shows up in their
  latency instead of being hidden (coordinated omission).
- end-to-end (Kafka's EndToEndLatency tool): send one record, await its acknowledgement, poll a
  consumer until that record arrives; latency = send() to receipt.

The producer and consumer run with their default settings except acks=all; the caller makes
sure the topic exists (``ensure_topic``).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from raftlog.client.admin import Admin
from raftlog.client.consumer import AsyncConsumer, TopicPartition
from raftlog.client.producer import AsyncProducer
from raftlog.errors import RaftlogError
from raftlog.perf.stats import percentile

PERCENTILES = (("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99), ("p99_9_ms", 0.999))
E2E_POLL_TIMEOUT_S = 10.0  # a record not received within this is counted as an error


@dataclass
class PhaseResult:
    name: str
    records: int  # records asked for
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> dict:
        lat = self.latencies_ms
        assert len(lat) + self.errors == self.records, (
            f"{self.name}: {len(lat)} latencies and {self.errors} errors for {self.records} records"
        )
        figures = {key: round(percentile(lat, fraction), 3) for key, fraction in PERCENTILES}
        return {
            "phase": self.name,
            "records": self.records,
            "measured": len(lat),
            "errors": self.errors,
            "records_per_sec": round(self.records / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            **figures,
            "max_ms": round(max(lat, default=0.0), 3),
        }


def ensure_topic(admin: Admin, topic: str, replication_factor: int, timeout_s: float = 30.0) -> dict:
    """The topic's description, creating it (one partition) if it is missing; waits for a leader."""
    try:
        admin.describe_topics([topic])
    except RaftlogError as exc:
        if exc.reason != "UNKNOWN_TOPIC_OR_PARTITION":
            raise
        try:
            admin.create_topic(topic, partitions=1, replication_factor=replication_factor)
        except RaftlogError as create_error:
            if create_error.reason != "TOPIC_ALREADY_EXISTS":  # another client won the race
                raise
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            [described] = admin.describe_topics([topic])
            if all(p["leader"] >= 0 for p in described["partitions"]):
                return described
        except RaftlogError as exc:
            if exc.reason != "UNKNOWN_TOPIC_OR_PARTITION":
                raise
        if time.monotonic() > deadline:
            raise RaftlogError("LEADER_NOT_AVAILABLE", f"topic {topic!r} has no leader after {timeout_s:.0f} s")
        time.sleep(0.05)


async def one_at_a_time(producer: AsyncProducer, topic: str, count: int, payload: bytes) -> PhaseResult:
    result = PhaseResult("one-at-a-time", count)
    started = time.perf_counter()
    for _ in range(count):
        sent = time.perf_counter()
        try:
            await (await producer.send(topic, payload, partition=0))
        except RaftlogError:
            result.errors += 1
            continue
        result.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
    result.elapsed_s = time.perf_counter() - started
    return result


async def fixed_rate(producer: AsyncProducer, topic: str, count: int, rate: int, payload: bytes) -> PhaseResult:
    """count records at rate records/s; latency from each record's scheduled time (see module doc)."""
    result = PhaseResult(f"fixed-rate {rate}/s", count)

    def done(due: float):
        def record(future) -> None:
            finished = time.perf_counter()
            try:
                future.result()
            except RaftlogError:
                result.errors += 1
                return
            result.latencies_ms.append((finished - due) * 1000.0)

        return record

    started = time.perf_counter()
    for i in range(count):
        due = started + i / rate
        ahead_s = due - time.perf_counter()
        if ahead_s > 0:
            await asyncio.sleep(ahead_s)
        elif i % 100 == 0:
            await asyncio.sleep(0)  # behind schedule: still let the sender run
        future = await producer.send(topic, payload, partition=0)
        future.add_done_callback(done(due))
    await producer.flush()  # a batch's callbacks run as it completes, so all have run now
    result.elapsed_s = time.perf_counter() - started
    return result


async def end_to_end(
    producer: AsyncProducer, consumer: AsyncConsumer, topic: str, count: int, payload_size: int
) -> PhaseResult:
    result = PhaseResult("end-to-end", count)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    started = time.perf_counter()
    for i in range(count):
        # A unique value, so the record polled is known to be this one.
        value = i.to_bytes(8, "big") + os.urandom(max(0, payload_size - 8))
        sent = time.perf_counter()
        try:
            await (await producer.send(topic, value, partition=0))
        except RaftlogError:
            result.errors += 1
            continue
        received = False
        deadline = sent + E2E_POLL_TIMEOUT_S
        while not received and time.perf_counter() < deadline:
            for record in await consumer.poll(timeout_ms=int(E2E_POLL_TIMEOUT_S * 1000)):
                if record.value == value:
                    received = True
        if received:
            result.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
        else:
            result.errors += 1
    result.elapsed_s = time.perf_counter() - started
    return result


async def run_latency(
    bootstrap: str,
    topic: str,
    one_at_a_time_records: int,
    rate_records: int,
    rate: int,
    end_to_end_records: int,
    record_size: int,
    security: dict | None = None,
) -> list[PhaseResult]:
    """security: the clients' security keyword arguments (security_protocol, ssl_*, sasl_*)."""
    payload = os.urandom(record_size)
    producer = AsyncProducer(bootstrap, acks="all", **(security or {}))
    consumer = AsyncConsumer(bootstrap, auto_offset_reset="latest", **(security or {}))
    results = []
    try:
        await producer.start()
        if one_at_a_time_records:
            results.append(await one_at_a_time(producer, topic, one_at_a_time_records, payload))
        if rate_records:
            results.append(await fixed_rate(producer, topic, rate_records, rate, payload))
        if end_to_end_records:
            results.append(await end_to_end(producer, consumer, topic, end_to_end_records, record_size))
    finally:
        await producer.close()
        await consumer.close()
    return results
