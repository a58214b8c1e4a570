"""`raftlog perf produce` / `raftlog perf consume`, reporting like Kafka's perf-test tools.

Producer latency of a record = from send() to the acknowledgement of its batch.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from dataclasses import dataclass, field

from raftlog.client.admin import Admin
from raftlog.client.consumer import AsyncConsumer, TopicPartition
from raftlog.client.producer import AsyncProducer
from raftlog.errors import Errors, RaftlogError
from raftlog.perf.stats import percentile


@dataclass
class ProduceReport:
    records: int
    elapsed_s: float
    record_size: int
    latencies_ms: list[float]
    errors: int
    warmup_records: int = 0
    settings: dict = field(default_factory=dict)
    sent: dict = field(default_factory=dict)  # the producer's stats() over the measured records
    client_cpu_s: float = 0.0
    node_cpu_s: dict[int, float | None] = field(default_factory=dict)
    leaders: dict[int, int] = field(default_factory=dict)  # partition -> leader node id
    load_average: tuple[float, float] = (0.0, 0.0)  # this host's 1-minute load average before and after
    node_idle_cpu_per_s: dict[int, float | None] = field(default_factory=dict)  # sampled before the run

    def summary(self) -> dict:
        lat = self.latencies_ms
        sent = self.sent
        return {
            "records": self.records,
            "warmup_records": self.warmup_records,
            "records_per_sec": round(self.records / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "mb_per_sec": round(self.records * self.record_size / self.elapsed_s / 1e6, 2) if self.elapsed_s else 0.0,
            "avg_latency_ms": round(sum(lat) / len(lat), 2) if lat else 0.0,
            "max_latency_ms": round(max(lat, default=0.0), 2),
            "p50_ms": round(percentile(lat, 0.50), 2),
            "p95_ms": round(percentile(lat, 0.95), 2),
            "p99_ms": round(percentile(lat, 0.99), 2),
            "p99_9_ms": round(percentile(lat, 0.999), 2),
            "errors": self.errors,
            "settings": self.settings,
            "leaders": {str(p): n for p, n in sorted(self.leaders.items())},
            "requests": sent.get("requests", 0),
            "avg_batch_bytes": round(sent["bytes"] / sent["batches"]) if sent.get("batches") else 0,
            "records_per_batch": round(sent["records"] / sent["batches"], 1) if sent.get("batches") else 0.0,
            "records_per_request": round(sent["records"] / sent["requests"], 1) if sent.get("requests") else 0.0,
            "client_cpu_s": round(self.client_cpu_s, 3),
            # CPU seconds per second of the run: well below 1 while the host is busy means the
            # client waited for a core (or for the cluster), so the figure is the machine's too.
            "client_cpu_share": round(self.client_cpu_s / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "load_average_1m": {"before": self.load_average[0], "after": self.load_average[1]},
            "node_cpu_s": {str(n): None if c is None else round(c, 3) for n, c in sorted(self.node_cpu_s.items())},
            # A node burns CPU while idle (timers, heartbeats, long polls): at that rate a slow run
            # accrues more, so the CPU the records cost is what is above it.
            "node_idle_cpu_per_s": {
                str(n): None if c is None else round(c, 3) for n, c in sorted(self.node_idle_cpu_per_s.items())
            },
            "node_cpu_above_idle_s": {
                str(n): None
                if c is None or self.node_idle_cpu_per_s.get(n) is None
                else round(c - self.node_idle_cpu_per_s[n] * self.elapsed_s, 3)  # type: ignore[operator]
                for n, c in sorted(self.node_cpu_s.items())
            },
        }


def describe_for_produce(admin: Admin, topic: str) -> tuple[dict[int, int], dict[int, str]]:
    """The topic's leader per partition, and each broker's metrics URL (its static metrics.port on
    the broker's host; none for a node without a metrics port). A principal that may not
    DescribeConfigs on the cluster (a producer-only user) gets no URLs: the run reports the
    servers' CPU as unknown."""
    [described] = admin.describe_topics([topic])
    leaders = {p["partition"]: p["leader"] for p in described["partitions"]}
    urls: dict[int, str] = {}
    for broker in admin.describe_cluster()["brokers"]:
        try:
            entries = admin.describe_configs("brokers", str(broker["id"]), True)
        except RaftlogError as exc:
            if exc.error is not Errors.CLUSTER_AUTHORIZATION_FAILED:
                raise
            return leaders, {}
        configs = {c["name"]: c["value"] for c in entries}
        port = int(configs.get("metrics.port") or 0)
        host = configs.get("metrics.host") or ""
        if host in ("", "0.0.0.0", "::"):
            host = broker["host"]
        if port:
            urls[broker["id"]] = f"http://{host}:{port}/metrics"
    return leaders, urls


def _scrape_cpu_seconds(url: str) -> float | None:
    """process_cpu_seconds_total of the node whose metrics are at url, None if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return None


async def nodes_cpu_seconds(metrics_urls: dict[int, str]) -> dict[int, float | None]:
    values = await asyncio.gather(*(asyncio.to_thread(_scrape_cpu_seconds, u) for u in metrics_urls.values()))
    return dict(zip(metrics_urls, values))


def cpu_delta(before: dict[int, float | None], after: dict[int, float | None]) -> dict[int, float | None]:
    return {
        n: None if before.get(n) is None or after.get(n) is None else after[n] - before[n]  # type: ignore[operator]
        for n in after
    }


async def _send_records(producer, topic, count, payload, throughput, latencies_ms) -> int:
    """Sends count records (at throughput records/s if > 0) and waits for all; appends each
    record's latency (send() to its batch's acknowledgement); returns how many failed."""
    send_times: list[float] = [0.0] * count
    errors = 0

    def on_batch_done(first_index: int, batch_count: int):
        def done(outcome) -> None:
            nonlocal errors
            finished = time.perf_counter()
            if outcome.exception() is not None:
                errors += batch_count
                return
            latencies_ms.extend(
                (finished - send_times[i]) * 1000.0 for i in range(first_index, first_index + batch_count)
            )

        return done

    started = time.perf_counter()
    current_batch, batch_first, batch_count = None, 0, 0
    for i in range(count):
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
    return errors


async def run_produce(
    bootstrap: str,
    topic: str,
    num_records: int,
    record_size: int,
    throughput: int,
    producer_settings: dict,
    warmup_records: int = 0,
    metrics_urls: dict[int, str] | None = None,
    idle_sample_s: float = 2.0,
) -> ProduceReport:
    """warmup_records first (connections, metadata, producer id, the interpreter's caches), not
    counted; then num_records measured (before both, each node's idle CPU rate over idle_sample_s): throughput, latency, the producer's requests and
    batches, this process's CPU and each node's (from its metrics) over the measured part."""
    producer = AsyncProducer(bootstrap, **producer_settings)
    payload = os.urandom(record_size)
    idle_before = await nodes_cpu_seconds(metrics_urls or {})
    await asyncio.sleep(idle_sample_s if metrics_urls else 0)
    idle = cpu_delta(idle_before, await nodes_cpu_seconds(metrics_urls or {}))
    idle_per_s = {n: None if c is None else c / idle_sample_s for n, c in idle.items()} if idle_sample_s else {}
    await producer.start()
    try:
        if warmup_records:
            await _send_records(producer, topic, warmup_records, payload, throughput, [])
        sent_before = producer.stats()
        nodes_before = await nodes_cpu_seconds(metrics_urls or {})
        load_before = os.getloadavg()[0]
        cpu_before = time.process_time()
        latencies_ms: list[float] = []
        started = time.perf_counter()
        errors = await _send_records(producer, topic, num_records, payload, throughput, latencies_ms)
        elapsed_s = time.perf_counter() - started
        client_cpu_s = time.process_time() - cpu_before
        load_after = os.getloadavg()[0]
        nodes_after = await nodes_cpu_seconds(metrics_urls or {})
        sent_after = producer.stats()
        settings = producer.settings
    finally:
        await producer.close()
    return ProduceReport(
        num_records,
        elapsed_s,
        record_size,
        latencies_ms,
        errors,
        warmup_records,
        settings,
        {k: sent_after[k] - sent_before[k] for k in sent_after},
        client_cpu_s,
        cpu_delta(nodes_before, nodes_after),
        load_average=(round(load_before, 2), round(load_after, 2)),
        node_idle_cpu_per_s=idle_per_s,
    )


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
    security: dict | None = None,  # security_protocol, ssl_* keyword arguments of the consumer
) -> ConsumeReport:
    """Reads num_records records (exactly: the last batch is counted only as far as needed) from
    the beginning. Without decode, records are counted from batch headers (poll_batches: no
    per-record work); with decode, every record is decoded and handed out (poll, as an
    application reading values does)."""
    consumer = AsyncConsumer(
        bootstrap,
        auto_offset_reset="earliest",
        max_poll_records=100_000,
        max_partition_fetch_bytes=fetch_bytes,
        **(security or {}),
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
