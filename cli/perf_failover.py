"""`raftlog perf failover`."""

from __future__ import annotations

import click

from cli.output import emit, output_option


def _text(summary: dict) -> str:
    lines = [f"cluster: {summary['shape']}"]
    lines += [
        f"run {i + 1}: killed node {run['victim']} ({run['role']}), acks=all produce stalled "
        f"{run['stall_s']:.3f} s, {run['failed_records']} records failed"
        for i, run in enumerate(summary["runs"])
    ]
    if summary["median_controller_kill_stall_s"] is not None:
        lines.append(
            f"active controller kill -9 -> produce succeeds again: median {summary['median_controller_kill_stall_s']:.3f} s"
        )
    lines.append(
        f"kill -9 -> acks=all produce succeeds again, all runs: median {summary['median_stall_s']:.3f} s, "
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
@click.option(
    "--controllers",
    default=None,
    type=click.IntRange(1, 9),
    help="Dedicated controllers (with --brokers) instead of 3 combined nodes.",
)
@click.option("--brokers", default=None, type=click.IntRange(3, 9), help="Broker-only nodes, with --controllers.")
@click.option("--base-port", default=19391, show_default=True, help="gRPC port of node 1 of the bench cluster.")
@output_option
def command(runs, interval_ms, controllers, brokers, base_port, output_format) -> None:
    """Data-plane failover: acks=all produce stall after kill -9 of a partition leader or of the
    active controller (own cluster: 3 combined nodes, or --controllers C --brokers B)."""
    from raftlog.perf.failover_bench import run_failover_bench

    if runs < 1 or interval_ms < 1:
        raise click.UsageError("--runs and --interval-ms must be >= 1")
    if (controllers is None) != (brokers is None):
        raise click.UsageError("--controllers and --brokers go together")
    result = run_failover_bench(
        runs,
        interval_ms,
        base_port,
        progress=lambda line: click.echo(line, err=True),
        controllers=controllers or 0,
        brokers=brokers or 0,
    )
    emit(output_format, result.summary(), _text)
