"""`raftlog perf quorum`."""

from __future__ import annotations

import click

from cli.output import emit, fail, output_option, reachable_bootstrap
from raftlog.limits import MAX_BENCHMARK_CONCURRENCY


def _alter_configs_lines(summary: dict) -> list[str]:
    lines = []
    many, single = summary["alter_configs_in_flight"], summary["alter_configs_one_at_a_time"]
    if many:
        lines.append(
            f"AlterConfigs, {many['in_flight']} in flight: {many['ops_per_s']:.0f} ops/s, p50 {many['p50_ms']:.2f} ms, "
            f"p99 {many['p99_ms']:.2f} ms, server CPU {many['server_cpu_us_per_op']:.0f} us/op "
            f"({many['ops']} ops, {many['errors']} errors); broker heartbeats meanwhile: p99 "
            f"{many['heartbeat_p99_ms']:.2f} ms, max {many['heartbeat_max_ms']:.2f} ms ({many['heartbeats']})"
        )
    if single:
        lines.append(
            f"AlterConfigs, one at a time: p50 {single['p50_ms']:.2f} ms, p99 {single['p99_ms']:.2f} ms, "
            f"server CPU {single['server_cpu_us_per_op']:.0f} us/op ({single['ops']} ops)"
        )
    return lines


def _text(summary: dict) -> str:
    commit, client = summary["commit_latency_ms"], summary["client_round_trip_ms"]
    return "\n".join(
        [f"cluster: {summary['cluster_shape']}"]
        + _alter_configs_lines(summary)
        + [
            f"pipelined writes: {summary['pipelined_writes']} committed, "
            f"{summary['pipelined_writes_per_s']:.0f} writes/sec (concurrency {summary['concurrency']})",
            f"single-write commit latency (leader): p50 {commit['p50']:.2f} ms, p99 {commit['p99']:.2f} ms, "
            f"max {commit['max']:.2f} ms ({commit['count']} writes)",
            f"single-write client round trip (AlterConfigs): p50 {client['p50']:.2f} ms, "
            f"p99 {client['p99']:.2f} ms, max {client['max']:.2f} ms",
            f"leader failover after kill -9: median {summary['failover_median_s']:.3f} s "
            f"(runs: {', '.join(f'{s:.3f}' for s in summary['failover_s'])})"
            if summary["failover_median_s"] is not None
            else "leader failover after kill -9: not measured (--bootstrap-server: the bench kills only its own cluster)",
        ]
    )


@click.command(name="quorum")
@click.option("--writes", default=20000, show_default=True, help="Pipelined writes to commit.")
@click.option(
    "--concurrency",
    default=256,
    show_default=True,
    type=click.IntRange(1, MAX_BENCHMARK_CONCURRENCY),
    help="Proposals in flight.",
)
@click.option("--single-writes", default=500, show_default=True, help="Writes with one in flight.")
@click.option("--failover-runs", default=5, show_default=True, help="Times to kill -9 the leader.")
@click.option(
    "--alter-ops",
    default=20000,
    show_default=True,
    type=click.IntRange(0),
    help="AlterConfigs to send to the active controller with --in-flight outstanding (0: skip).",
)
@click.option(
    "--in-flight",
    default=256,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="AlterConfigs outstanding at once.",
)
@click.option(
    "--controllers",
    default=None,
    type=click.IntRange(1, 9),
    help="Dedicated controllers (with --brokers) instead of 3 combined nodes: failover of a controller-only leader.",
)
@click.option("--brokers", default=None, type=click.IntRange(1, 9), help="Broker-only nodes, with --controllers.")
@click.option("--base-port", default=19291, show_default=True, help="gRPC port of node 1 of the bench cluster.")
@click.option(
    "--bootstrap-server",
    "bootstrap_server",
    default=None,
    help="Run the write rows against this existing cluster instead (the failover row is skipped).",
)
@output_option
def command(
    writes,
    concurrency,
    single_writes,
    failover_runs,
    alter_ops,
    in_flight,
    controllers,
    brokers,
    base_port,
    bootstrap_server,
    output_format,
) -> None:
    """Metadata quorum: pipelined writes/s, single-write latency, AlterConfigs with N in flight,
    failover time (own 3-node cluster, or the write rows only against --bootstrap-server)."""
    from raftlog.errors import RaftlogError
    from raftlog.perf.quorum_bench import run_quorum_bench, run_quorum_bench_against

    def progress(line: str) -> None:
        click.echo(line, err=True)

    if (controllers is None) != (brokers is None):
        raise click.UsageError("--controllers and --brokers go together")
    if controllers is not None and bootstrap_server is not None:
        raise click.UsageError("--controllers/--brokers shape the bench's own cluster; not with --bootstrap-server")

    if bootstrap_server is not None:
        servers = ",".join(reachable_bootstrap(bootstrap_server))
        progress(
            f"against {servers}: write rows only; the failover and AlterConfigs rows need their own cluster "
            "and are skipped"
        )
        try:
            result = run_quorum_bench_against(servers, writes, concurrency, single_writes, progress=progress)
        except RaftlogError as exc:
            fail(f"{exc.reason}: {exc.message}")
    else:
        result = run_quorum_bench(
            writes,
            concurrency,
            single_writes,
            failover_runs,
            base_port,
            progress=progress,
            alter_ops=alter_ops,
            in_flight=in_flight,
            controllers=controllers,
            brokers=brokers or 0,
        )
    emit(output_format, result.summary(), _text)
