"""`raftlog perf kafka`: the Kafka listener against the gRPC path, in one run on one topic.

Produce: raftlog's gRPC Producer (what `perf produce` runs) and then confluent-kafka's Producer
(librdkafka) against the Kafka listeners, twice (with librdkafka's defaults, and with the gRPC
producer's batch size and linger), the same number of records of the same size with the same acks
and idempotence, each after its own warm-up; latency of a record = from send /
produce() to its acknowledgement (librdkafka's delivery report, taken at the next poll, which
the loop calls every few records; one partition, so reports arrive in the order produced).
Consume: the first records of the partition read back from the beginning by `perf consume`'s
consumer (batch headers only, and decoding every record) and by a librdkafka consumer (which
hands every record to Python as a Message).

confluent-kafka is a development dependency: without it the command says so.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass

from raftlog.perf.client_bench import run_consume, run_produce
from raftlog.perf.stats import percentile

KAFKA_POLL_EVERY_RECORDS = 100  # delivery reports are taken (and timed) at poll()


@dataclass(frozen=True)
class PathFigures:
    path: str
    records: int
    elapsed_s: float
    latencies_ms: tuple[float, ...] = ()
    errors: int = 0

    def summary(self) -> dict:
        lat = self.latencies_ms
        figures = {
            "path": self.path,
            "records": self.records,
            "records_per_sec": round(self.records / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "errors": self.errors,
        }
        if lat:
            figures.update(
                p50_ms=round(percentile(lat, 0.50), 2),
                p99_ms=round(percentile(lat, 0.99), 2),
                max_ms=round(max(lat), 2),
            )
        return figures


def _kafka_producer_configs(bootstrap: str, settings: dict, security: dict) -> dict[str, dict]:
    """librdkafka's settings for each Kafka produce run, by its name in the report: its own defaults
    (batch.size 1,000,000, linger.ms 5) with the gRPC producer's acks and idempotence, then with
    the gRPC producer's batch size too. An idempotent librdkafka producer has one Produce request in
    flight per partition (whatever max.in.flight says), so its batch size bounds what it sends per
    replication round trip, where the gRPC producer has max_in_flight batches in flight."""
    common = {
        "bootstrap.servers": bootstrap,
        "acks": "all" if settings["acks"] == -1 else str(settings["acks"]),
        "enable.idempotence": settings["idempotent"],
        **security,
    }
    return {
        "Kafka listener, confluent-kafka Producer (librdkafka defaults)": common,
        f"Kafka listener, confluent-kafka Producer (batch.size={settings['batch_size']}, as gRPC)": {
            **common,
            "batch.size": settings["batch_size"],
            "linger.ms": settings["linger_ms"],
        },
    }


def _kafka_send(
    producer, topic: str, count: int, payload: bytes, latencies_ms: list[float] | None, throughput: int = -1
) -> int:
    """Produces count records (at throughput records/s if > 0, else as fast as librdkafka takes
    them) and waits for every report; returns how many failed."""
    sent_at: collections.deque[float] = collections.deque()
    errors = 0

    def delivered(err, _message) -> None:
        nonlocal errors
        started = sent_at.popleft()
        if err is not None:
            errors += 1
        elif latencies_ms is not None:
            latencies_ms.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    for i in range(count):
        if throughput > 0:
            ahead_s = i / throughput - (time.perf_counter() - started)
            if ahead_s > 0:
                producer.poll(ahead_s)  # takes reports while it waits
        while True:
            try:
                sent_at.append(time.perf_counter())
                producer.produce(topic, payload, on_delivery=delivered)
                break
            except BufferError:  # its queue is full: take reports until there is room
                sent_at.pop()
                producer.poll(0.005)
        if i % KAFKA_POLL_EVERY_RECORDS == 0:
            producer.poll(0)
    left = producer.flush(120)
    return errors + left


def run_kafka_produce(
    path: str, config: dict, topic: str, num_records: int, record_size: int, warmup: int, throughput: int = -1
) -> PathFigures:
    import confluent_kafka

    producer = confluent_kafka.Producer(config)
    payload = os.urandom(record_size)
    if warmup:
        _kafka_send(producer, topic, warmup, payload, None, throughput)
    latencies_ms: list[float] = []
    started = time.perf_counter()
    errors = _kafka_send(producer, topic, num_records, payload, latencies_ms, throughput)
    elapsed_s = time.perf_counter() - started
    return PathFigures(path, num_records, elapsed_s, tuple(latencies_ms), errors)


def run_kafka_consume(bootstrap: str, topic: str, num_records: int, security: dict, timeout_s: float) -> PathFigures:
    import confluent_kafka

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "raftlog-perf-kafka",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **security,
        }
    )
    records = errors = 0
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        started = time.perf_counter()
        last_progress = started
        while records < num_records and time.perf_counter() - last_progress < timeout_s:
            messages = consumer.consume(min(10_000, num_records - records), 0.5)
            for message in messages:
                if message.error() is None:
                    _ = message.value()  # handed to the application, as perf consume --decode does
                    records += 1
                else:
                    errors += 1
            if messages:
                last_progress = time.perf_counter()
        elapsed_s = time.perf_counter() - started
    finally:
        consumer.close()
    return PathFigures("Kafka listener, librdkafka Consumer", records, elapsed_s, (), errors)


async def run_kafka_comparison(
    grpc_bootstrap: str,
    kafka_bootstrap: str,
    topic: str,
    num_records: int,
    record_size: int,
    producer_settings: dict,
    warmup_records: int,
    grpc_security: dict,
    kafka_security: dict,
    throughput: int = -1,
) -> dict:
    """The figures of both paths, gRPC first, each after its own warm-up, on the same topic."""
    load_before = round(os.getloadavg()[0], 2)
    grpc_produce = await run_produce(
        grpc_bootstrap,
        topic,
        num_records,
        record_size,
        throughput,
        {**producer_settings, **grpc_security},
        warmup_records,
        idle_sample_s=0,
    )
    settings = grpc_produce.settings
    kafka_produce = [
        await asyncio.to_thread(
            run_kafka_produce, path, config, topic, num_records, record_size, warmup_records, throughput
        )
        for path, config in _kafka_producer_configs(kafka_bootstrap, settings, kafka_security).items()
    ]
    grpc_headers = await run_consume(grpc_bootstrap, topic, num_records, [0], 10_000, False, security=grpc_security)
    grpc_decoded = await run_consume(grpc_bootstrap, topic, num_records, [0], 10_000, True, security=grpc_security)
    kafka_consume = await asyncio.to_thread(run_kafka_consume, kafka_bootstrap, topic, num_records, kafka_security, 10)
    grpc_summary = grpc_produce.summary()
    return {
        "topic": topic,
        "records": num_records,
        "record_size": record_size,
        "warmup_records": warmup_records,
        "throughput": throughput,
        "producer_settings": {
            k: settings[k] for k in ("acks", "idempotent", "batch_size", "linger_ms", "max_in_flight")
        },
        "produce": [
            {
                "path": "gRPC, raftlog Producer (perf produce)",
                "records": num_records,
                "records_per_sec": grpc_summary["records_per_sec"],
                "errors": grpc_summary["errors"],
                "p50_ms": grpc_summary["p50_ms"],
                "p99_ms": grpc_summary["p99_ms"],
                "max_ms": grpc_summary["max_latency_ms"],
            },
            *(figures.summary() for figures in kafka_produce),
        ],
        "consume": [
            {**_consume_figures(grpc_headers), "path": "gRPC, perf consume (batch headers)"},
            {**_consume_figures(grpc_decoded), "path": "gRPC, perf consume --decode"},
            kafka_consume.summary(),
        ],
        "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
    }


def _consume_figures(report) -> dict:
    summary = report.summary()
    return {"records": summary["records"], "records_per_sec": summary["records_per_sec"], "errors": 0}
