"""`raftlog perf produce` and `raftlog perf consume`."""

from __future__ import annotations

import asyncio

import click

from cli.output import bootstrap_option, emit, fail, output_option, parse_bootstrap


def _produce_text(s: dict) -> str:
    return (
        f"{s['records']} records sent, {s['records_per_sec']:.1f} records/sec ({s['mb_per_sec']:.2f} MB/sec), "
        f"{s['avg_latency_ms']:.2f} ms avg latency, {s['max_latency_ms']:.2f} ms max latency, "
        f"{s['p50_ms']:.0f} ms 50th, {s['p95_ms']:.0f} ms 95th, {s['p99_ms']:.0f} ms 99th, "
        f"{s['p99_9_ms']:.0f} ms 99.9th." + (f" {s['errors']} records failed." if s["errors"] else "")
    )


@click.command(name="produce")
@click.option("--topic", required=True)
@click.option("--num-records", type=int, default=1_000_000, show_default=True)
@click.option("--record-size", type=int, default=100, show_default=True)
@click.option(
    "--throughput", type=int, default=-1, show_default=True, help="Records/s to aim for; -1 is as fast as possible."
)
@click.option("--acks", type=click.Choice(["all", "1", "0"]), default="all", show_default=True)
@click.option("--batch-size", type=int, default=262144, show_default=True)
@click.option("--linger-ms", type=int, default=5, show_default=True)
@click.option("--compression-type", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none")
@bootstrap_option
@output_option
def produce(
    topic,
    num_records,
    record_size,
    throughput,
    acks,
    batch_size,
    linger_ms,
    compression_type,
    bootstrap_server,
    output_format,
) -> None:
    """Producer throughput and latency (like kafka-producer-perf-test)."""
    from raftlog.perf.client_bench import run_produce

    if num_records < 1 or record_size < 0:
        fail("--num-records must be >= 1 and --record-size >= 0")
    settings = {
        "acks": acks if acks == "all" else int(acks),
        "batch_size": batch_size,
        "linger_ms": linger_ms,
        "compression_type": None if compression_type == "none" else compression_type,
    }
    report = asyncio.run(
        run_produce(",".join(parse_bootstrap(bootstrap_server)), topic, num_records, record_size, throughput, settings)
    )
    emit(output_format, report.summary(), _produce_text)


def _consume_text(s: dict) -> str:
    how = (
        "records decoded; MB = key and value bytes"
        if s["decoded"]
        else f"records counted from {s['batches']} batch headers, not decoded (--decode to decode); MB = batch bytes"
    )
    return (
        "data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, elapsed.sec\n"
        f"{s['data_consumed_mb']:.4f}, {s['mb_per_sec']:.4f}, {s['records']}, {s['records_per_sec']:.1f}, "
        f"{s['elapsed_s']:.3f}\n({how})"
    )


@click.command(name="consume")
@click.option("--topic", required=True)
@click.option("--messages", "num_records", type=int, default=1_000_000, show_default=True)
@click.option(
    "--timeout-ms", type=int, default=10_000, show_default=True, help="Give up after this long without records."
)
@click.option(
    "--fetch-size",
    type=int,
    default=1024 * 1024,
    show_default=True,
    help="Bytes to fetch from the partition per request (max_partition_fetch_bytes).",
)
@click.option(
    "--decode/--no-decode",
    default=False,
    show_default=True,
    help="Decode every record (as an application reading values does) instead of counting from batch headers.",
)
@bootstrap_option
@output_option
def consume(topic, num_records, timeout_ms, fetch_size, decode, bootstrap_server, output_format) -> None:
    """Consumer throughput from the beginning of a topic (like kafka-consumer-perf-test); stops at
    exactly --messages records."""
    from raftlog.client.admin import Admin
    from raftlog.errors import RaftlogError
    from raftlog.perf.client_bench import run_consume

    servers = parse_bootstrap(bootstrap_server)
    try:
        with Admin(servers) as admin:
            [described] = admin.describe_topics([topic])
    except RaftlogError as exc:
        fail(f"{exc.reason}: {exc.message}")
    partitions = [p["partition"] for p in described["partitions"]]
    if num_records < 1 or fetch_size < 1:
        fail("--messages and --fetch-size must be >= 1")
    report = asyncio.run(run_consume(",".join(servers), topic, num_records, partitions, timeout_ms, decode, fetch_size))
    emit(output_format, report.summary(), _consume_text)


commands = [produce, consume]
