"""`raftlog perf reassign`."""

from __future__ import annotations

import click

from cli.output import emit, output_option


def _text(summary: dict) -> str:
    lines = [f"partition of {summary['size_bytes'] / (1 << 20):.0f} MiB (filled in {summary['fill_seconds']} s)"]
    for move in summary["moves"]:
        throttle = move["throttle_bytes_per_s"]
        how = "no throttle" if throttle is None else f"throttle {throttle / (1 << 20):.1f} MiB/s"
        lines.append(
            f"reassign broker {move['from']} -> {move['to']}, {how}: {move['seconds']} s ({move['mib_per_s']} MiB/s)"
        )
    lines.append(
        f"load average before {summary['load_average_before']}, after {summary['load_average_after']} (1, 5, 15 min)"
    )
    return "\n".join(lines)


@click.command(name="reassign")
@click.option("--size-mib", default=1024, show_default=True, help="Bytes of the partition to move, in MiB.")
@click.option(
    "--throttle",
    default=32 * 1024 * 1024,
    show_default=True,
    help="Bytes/s of the throttled move (leader/follower.replication.throttled.rate).",
)
@click.option("--base-port", default=19491, show_default=True, help="gRPC port of node 1 of the bench cluster.")
@output_option
def command(size_mib, throttle, base_port, output_format) -> None:
    """Time to reassign one partition to another broker, without and with a throttle (own 3-node cluster)."""
    from raftlog.perf.reassign_bench import run_reassign_bench

    if size_mib < 1 or throttle < 1:
        raise click.UsageError("--size-mib and --throttle must be >= 1")
    result = run_reassign_bench(size_mib, throttle, base_port, progress=lambda line: click.echo(line, err=True))
    emit(output_format, result, _text)
