"""`raftlog perf failover`."""

from __future__ import annotations

import click

from cli.output import emit, output_option


def _text(summary: dict) -> str:
    lines = [
        f"run {i + 1}: killed node {run['victim']} "
        f"({'also' if run['was_controller'] else 'not'} the active controller), acks=all produce stalled "
        f"{run['stall_s']:.3f} s, {run['failed_records']} records failed"
        for i, run in enumerate(summary["runs"])
    ]
    lines.append(
        f"partition leader kill -9 -> acks=all produce succeeds again: median {summary['median_stall_s']:.3f} s, "
        f"max {summary['max_stall_s']:.3f} s"
    )
    return "\n".join(lines)


@click.command(name="failover")
@click.option(
    "--runs",
    default=4,
    show_default=True,
    help="Partition leaders to kill -9 (alternating: a plain broker, then the one that is also the active controller).",
)
@click.option("--interval-ms", default=5, show_default=True, help="The producer sends one record this often.")
@click.option("--base-port", default=19391, show_default=True, help="gRPC port of node 1 of the bench cluster.")
@output_option
def command(runs, interval_ms, base_port, output_format) -> None:
    """Data-plane failover: acks=all produce stall after kill -9 of a partition leader (own 3-node cluster)."""
    from raftlog.perf.failover_bench import run_failover_bench

    if runs < 1 or interval_ms < 1:
        raise click.UsageError("--runs and --interval-ms must be >= 1")
    result = run_failover_bench(runs, interval_ms, base_port, progress=lambda line: click.echo(line, err=True))
    emit(output_format, result.summary(), _text)
