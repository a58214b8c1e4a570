"""`raftlog perf quorum`."""

from __future__ import annotations

import click

from cli.output import emit, fail, output_option, reachable_bootstrap
from raftlog.limits import MAX_BENCHMARK_CONCURRENCY


def _text(summary: dict) -> str:
    commit, client = summary["commit_latency_ms"], summary["client_round_trip_ms"]
    return "\n".join(
        [
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
@click.option("--base-port", default=19291, show_default=True, help="gRPC port of node 1 of the bench cluster.")
@click.option(
    "--bootstrap-server",
    "bootstrap_server",
    default=None,
    help="Run the write rows against this existing cluster instead (the failover row is skipped).",
)
@output_option
def command(writes, concurrency, single_writes, failover_runs, base_port, bootstrap_server, output_format) -> None:
    """Metadata quorum: pipelined writes/s, single-write latency, failover time (own 3-node cluster,
    or the write rows only against --bootstrap-server)."""
    from raftlog.errors import RaftlogError
    from raftlog.perf.quorum_bench import run_quorum_bench, run_quorum_bench_against

    def progress(line: str) -> None:
        click.echo(line, err=True)

    if bootstrap_server is not None:
        servers = ",".join(reachable_bootstrap(bootstrap_server))
        progress(f"against {servers}: write rows only; the failover row needs its own cluster and is skipped")
        try:
            result = run_quorum_bench_against(servers, writes, concurrency, single_writes, progress=progress)
        except RaftlogError as exc:
            fail(f"{exc.reason}: {exc.message}")
    else:
        result = run_quorum_bench(writes, concurrency, single_writes, failover_runs, base_port, progress=progress)
    emit(output_format, result.summary(), _text)
