"""`raftlog perf group`."""

from __future__ import annotations

import click

from cli.output import emit, output_option


def _text(s: dict) -> str:
    return "\n".join(
        [
            f"join -> first record ({s['joins']} joins): p50 {s['join_to_first_record_p50_s']:.3f} s, "
            f"max {s['join_to_first_record_max_s']:.3f} s",
            f"existing members, longest pause on a kept partition: {s['kept_partitions_longest_pause_ms']:.0f} ms "
            f"(end-to-end delay above the {s['baseline_end_to_end_delay_ms_max']:.0f} ms seen as long without joins; records "
            f"every {s['record_interval_per_partition_ms']:.0f} ms per partition)",
            f"offset commits: {s['commits_per_sec']:.0f}/s, p50 {s['commit_p50_ms']:.2f} ms, "
            f"p99 {s['commit_p99_ms']:.2f} ms, max {s['commit_max_ms']:.2f} ms",
            f"consume: assigned {s['assigned_consume_records_per_sec']:.0f} records/s, group "
            f"{s['group_consume_records_per_sec']:.0f} records/s ({100 * s['group_vs_assigned']:.0f}%)",
            f"coordinator kill -9 -> commits succeed again: {s['coordinator_failover_s']:.3f} s",
        ]
    )


@click.command(name="group")
@click.option("--members", default=10, show_default=True)
@click.option("--partitions", default=60, show_default=True)
@click.option("--joins", default=10, show_default=True)
@click.option("--rate", default=600, show_default=True, help="Records/s the steady producer writes.")
@click.option("--commit-rate", default=1000, show_default=True, help="Offset commits/s to aim for.")
@click.option("--commit-seconds", default=5.0, show_default=True)
@click.option("--throughput-records", default=100_000, show_default=True)
@click.option("--base-port", default=19491, show_default=True, help="gRPC port of node 1 of the bench cluster.")
@output_option
def command(
    members, partitions, joins, rate, commit_rate, commit_seconds, throughput_records, base_port, output_format
) -> None:
    """Consumer groups: join latency, pauses, commits, throughput, coordinator failover (own 3-node cluster)."""
    from raftlog.perf.group_bench import run_group_bench

    if min(members, partitions, joins, rate, commit_rate, throughput_records) < 1 or commit_seconds <= 0:
        raise click.UsageError("every count and rate must be >= 1")
    result = run_group_bench(
        members,
        partitions,
        joins,
        rate,
        commit_rate,
        commit_seconds,
        throughput_records,
        base_port,
        progress=lambda line: click.echo(line, err=True),
    )
    emit(output_format, result.summary(), _text)
