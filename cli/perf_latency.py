"""`raftlog perf latency`: acks=all latency one at a time, at a fixed rate, and end to end."""

from __future__ import annotations

import asyncio

import click

from cli.output import bootstrap_option, client_security, emit, fail, format_table, output_option, parse_bootstrap

COLUMNS = ("phase", "records", "errors", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")


def _text(report: dict) -> str:
    head = (
        f"topic {report['topic']} partition 0, leader node {report['leader']}, replicas {report['replicas']}, "
        f"acks=all, record size {report['record_size']} bytes, producer and consumer defaults otherwise"
    )
    rows = [[phase[c] for c in COLUMNS] for phase in report["phases"]]
    return head + "\n" + format_table([c.replace("_ms", " ms").replace("p99_9", "p99.9") for c in COLUMNS], rows)


@click.command(name="latency")
@click.option("--topic", default="perf-latency", show_default=True, help="Created (1 partition) if missing.")
@click.option("--replication-factor", type=int, default=3, show_default=True, help="For a topic this creates.")
@click.option("--num-records", type=int, default=1000, show_default=True, help="One-at-a-time writes.")
@click.option("--throughput", type=int, default=5000, show_default=True, help="Fixed-rate writes: records/s.")
@click.option("--duration-s", type=float, default=5.0, show_default=True, help="Fixed-rate writes: how long.")
@click.option(
    "--rate-records", type=int, default=None, help="Fixed-rate writes: this many records instead of --duration-s."
)
@click.option("--e2e-records", type=int, default=1000, show_default=True, help="End-to-end round trips.")
@click.option("--record-size", type=int, default=100, show_default=True)
@bootstrap_option
@output_option
def command(
    topic,
    replication_factor,
    num_records,
    throughput,
    duration_s,
    rate_records,
    e2e_records,
    record_size,
    bootstrap_server,
    output_format,
) -> None:
    """acks=all latency p50/p90/p99/p99.9/max: one write at a time, writes at a fixed rate (from each
    record's scheduled time, so stalls are not hidden), and produce-to-consume (like Kafka's
    EndToEndLatency)."""
    from raftlog.client.admin import Admin
    from raftlog.errors import RaftlogError
    from raftlog.perf.latency_bench import ensure_topic, run_latency

    rate_count = rate_records if rate_records is not None else int(throughput * duration_s)
    if min(num_records, rate_count, e2e_records) < 0 or throughput < 1 or record_size < 8:
        fail("record counts must be >= 0, --throughput >= 1 and --record-size >= 8")
    servers = parse_bootstrap(bootstrap_server)
    try:
        security = client_security()
        with Admin(servers, **security) as admin:
            described = ensure_topic(admin, topic, replication_factor)
        phases = asyncio.run(
            run_latency(
                ",".join(servers), topic, num_records, rate_count, throughput, e2e_records, record_size, security
            )
        )
    except RaftlogError as exc:
        fail(f"{exc.reason}: {exc.message}")
    partition = described["partitions"][0]
    report = {
        "topic": topic,
        "leader": partition["leader"],
        "replicas": partition["replicas"],
        "record_size": record_size,
        "phases": [p.summary() for p in phases],
    }
    emit(output_format, report, _text)
