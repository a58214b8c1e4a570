"""`raftlog perf produce` / `raftlog perf consume`, reporting like Kafka's perf-test tools.

Producer latency of a record = from send() to the acknowledgement of its batch.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from raftlog.client.consumer import AsyncConsumer, TopicPartition
from raftlog.client.producer import AsyncProducer
from raftlog.perf.stats import percentile


@dataclass
class ProduceReport:
    records: int
    elapsed_s: float
    record_size: int
    latencies_ms: list[float]
    errors: int

    def summary(self) -> dict:
        lat = self.latencies_ms
        return {
            "records": self.records,
            "records_per_sec": round(self.records / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "mb_per_sec": round(self.records * self.record_size / self.elapsed_s / 1e6, 2) if self.elapsed_s else 0.0,
            "avg_latency_ms": round(sum(lat) / len(lat), 2) if lat else 0.0,
            "max_latency_ms": round(max(lat, default=0.0), 2),
            "p50_ms": round(percentile(lat, 0.50), 2),
            "p95_ms": round(percentile(lat, 0.95), 2),
            "p99_ms": round(percentile(lat, 0.99), 2),
            "p99_9_ms": round(percentile(lat, 0.999), 2),
            "errors": self.errors,
        }


async def run_produce(
    bootstrap: str, topic: str, num_records: int, record_size: int, throughput: int, producer_settings: dict
) -> ProduceReport:
    producer = AsyncProducer(bootstrap, **producer_settings)
    payload = os.urandom(record_size)
    send_times: list[float] = [0.0] * num_records
    latencies_ms: list[float] = []
    errors = 0

    def on_batch_done(first_index: int, count: int):
        def done(outcome) -> None:
            nonlocal errors
            finished = time.perf_counter()
            if outcome.exception() is not None:
                errors += count
                return
            latencies_ms.extend((finished - send_times[i]) * 1000.0 for i in range(first_index, first_index + count))

        return done

    await producer.start()
    started = time.perf_counter()
    current_batch, batch_first, batch_count = None, 0, 0
    for i in range(num_records):
        if throughput > 0:
            ahead_s = i / throughput - (time.perf_counter() - started)
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
        send_times[i] = time.perf_counter()
        future = await producer.send(topic, payload)
        batch = future._batch
        if batch is not current_batch:
            if current_batch is not None:
                current_batch.outcome.add_done_callback(on_batch_done(batch_first, batch_count))
            current_batch, batch_first, batch_count = batch, i, 0
        batch_count += 1
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the sender run
    if current_batch is not None:
        current_batch.outcome.add_done_callback(on_batch_done(batch_first, batch_count))
    await producer.flush()
    elapsed_s = time.perf_counter() - started
    await producer.close()
    return ProduceReport(num_records, elapsed_s, record_size, latencies_ms, errors)


@dataclass
class ConsumeReport:
    records: int
    bytes: int
    elapsed_s: float
    decoded: bool
    batches: int

    def summary(self) -> dict:
        return {
            "records": self.records,
            "decoded": self.decoded,
            # decoded: key and value bytes of the records counted; else the bytes of the batches they came in
            "bytes_counted": "key+value" if self.decoded else "batches",
            "batches": self.batches,
            "data_consumed_mb": round(self.bytes / 1e6, 3),
            "mb_per_sec": round(self.bytes / 1e6 / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "records_per_sec": round(self.records / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "elapsed_s": round(self.elapsed_s, 3),
        }


async def run_consume(
    bootstrap: str,
    topic: str,
    num_records: int,
    partitions: list[int],
    timeout_ms: int,
    decode: bool = False,
    fetch_bytes: int = 1024 * 1024,
) -> ConsumeReport:
    """Reads num_records records (exactly: the last batch is counted only as far as needed) from
    the beginning. Without decode, records are counted from batch headers (poll_batches: no
    per-record work); with decode, every record is decoded and handed out (poll, as an
    application reading values does)."""
    consumer = AsyncConsumer(
        bootstrap, auto_offset_reset="earliest", max_poll_records=100_000, max_partition_fetch_bytes=fetch_bytes
    )
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    records = total_bytes = batches = 0
    started = time.perf_counter()
    last_progress = started
    try:
        while records < num_records and (time.perf_counter() - last_progress) * 1000 < timeout_ms:
            wanted = num_records - records
            if decode:
                polled = (await consumer.poll(timeout_ms=500))[:wanted]
                total_bytes += sum(len(r.value or b"") + len(r.key or b"") for r in polled)
                got = len(polled)
            else:
                got = 0
                for batch in await consumer.poll_batches(timeout_ms=500, max_records=wanted):
                    got += min(batch.record_count, wanted - got)
                    total_bytes += batch.size_bytes
                    batches += 1
            if got:
                last_progress = time.perf_counter()
            records += got
    finally:
        await consumer.close()
    assert records <= num_records, f"counted {records} records, more than the {num_records} asked for"
    return ConsumeReport(records, total_bytes, time.perf_counter() - started, decode, batches)
