"""`raftlog perf produce` and `raftlog perf consume`."""

from __future__ import annotations

import asyncio

import click

from cli.output import bootstrap_option, client_security, emit, fail, output_option, parse_bootstrap


def _produce_text(s: dict) -> str:
    settings = s["settings"]
    idle = s["node_idle_cpu_per_s"]
    nodes = ", ".join(
        f"node {n} {'?' if c is None else f'{c:.2f}'} s"
        + (
            ""
            if idle.get(n) is None
            else f" (idle rate {idle[n]:.3f}/s, {s['node_cpu_above_idle_s'][n]:.2f} s above it)"
        )
        for n, c in s["node_cpu_s"].items()
    )
    leaders = ", ".join(f"{p}->{n}" for p, n in s["leaders"].items())
    return (
        f"{s['records']} records sent, {s['records_per_sec']:.1f} records/sec ({s['mb_per_sec']:.2f} MB/sec), "
        f"{s['avg_latency_ms']:.2f} ms avg latency, {s['max_latency_ms']:.2f} ms max latency, "
        f"{s['p50_ms']:.0f} ms 50th, {s['p95_ms']:.0f} ms 95th, {s['p99_ms']:.0f} ms 99th, "
        f"{s['p99_9_ms']:.0f} ms 99.9th."
        + (f" {s['errors']} records failed." if s["errors"] else "")
        + f"\nafter {s['warmup_records']} warm-up records (not counted); producer settings: "
        + ", ".join(
            f"{k}={settings[k]}" for k in ("acks", "batch_size", "linger_ms", "max_in_flight", "compression_type")
        )
        + f"\nleader (partition->node): {leaders}; {s['requests']} requests, "
        f"{s['records_per_request']} records/request, {s['records_per_batch']} records/batch, "
        f"{s['avg_batch_bytes']} bytes/batch"
        + f"\nCPU over the measured records: client {s['client_cpu_s']:.2f} s ({s['client_cpu_share']:.2f} of a core); "
        f"servers {nodes or 'unknown'}; this host's load average {s['load_average_1m']['before']:.2f} before, "
        f"{s['load_average_1m']['after']:.2f} after"
    )


@click.command(name="produce")
@click.option("--topic", required=True)
@click.option("--num-records", type=int, default=1_000_000, show_default=True)
@click.option("--record-size", type=int, default=100, show_default=True)
@click.option(
    "--throughput", type=int, default=-1, show_default=True, help="Records/s to aim for; -1 is as fast as possible."
)
@click.option(
    "--warmup-records",
    type=int,
    default=None,
    help="Sent first and not counted (default: 10% of --num-records, at most 50,000).",
)
@click.option("--acks", type=click.Choice(["all", "1", "0"]), default="all", show_default=True)
@click.option("--batch-size", type=int, default=None, help="Bytes per batch (default: the Producer's).")
@click.option("--linger-ms", type=int, default=None, help="Default: the Producer's.")
@click.option(
    "--max-in-flight", type=int, default=None, help="Batches in flight per partition (default: the Producer's)."
)
@click.option("--compression-type", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none")
@bootstrap_option
@output_option
def produce(
    topic,
    num_records,
    record_size,
    throughput,
    warmup_records,
    acks,
    batch_size,
    linger_ms,
    max_in_flight,
    compression_type,
    bootstrap_server,
    output_format,
) -> None:
    """Producer throughput and latency (like kafka-producer-perf-test), with the Producer's default
    settings unless flags say otherwise; reports the partition leaders, the batches and requests
    the producer made, and the CPU of this process and of each node over the measured records."""
    from raftlog.client.admin import Admin
    from raftlog.errors import RaftlogError
    from raftlog.perf.client_bench import describe_for_produce, run_produce

    if num_records < 1 or record_size < 0 or (warmup_records is not None and warmup_records < 0):
        fail("--num-records must be >= 1, --record-size and --warmup-records >= 0")
    if warmup_records is None:
        warmup_records = min(num_records // 10, 50_000)
    settings: dict = {"acks": acks if acks == "all" else int(acks)}
    for name, value in (("batch_size", batch_size), ("linger_ms", linger_ms), ("max_in_flight", max_in_flight)):
        if value is not None:
            settings[name] = value
    if compression_type != "none":
        settings["compression_type"] = compression_type
    security = client_security()
    settings.update(security)  # the producer's security_protocol and ssl_* keyword arguments
    servers = parse_bootstrap(bootstrap_server)
    try:
        with Admin(servers, **security) as admin:
            leaders, metrics_urls = describe_for_produce(admin, topic)
        report = asyncio.run(
            run_produce(
                ",".join(servers),
                topic,
                num_records,
                record_size,
                throughput,
                settings,
                warmup_records,
                metrics_urls,
            )
        )
    except (RaftlogError, ValueError) as exc:
        fail(f"{exc.reason}: {exc.message}" if isinstance(exc, RaftlogError) else str(exc))
    report.leaders = leaders
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
        with Admin(servers, **client_security()) as admin:
            [described] = admin.describe_topics([topic])
    except RaftlogError as exc:
        fail(f"{exc.reason}: {exc.message}")
    partitions = [p["partition"] for p in described["partitions"]]
    if num_records < 1 or fetch_size < 1:
        fail("--messages and --fetch-size must be >= 1")
    report = asyncio.run(
        run_consume(
            ",".join(servers), topic, num_records, partitions, timeout_ms, decode, fetch_size, client_security()
        )
    )
    emit(output_format, report.summary(), _consume_text)


commands = [produce, consume]
