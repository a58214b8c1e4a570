"""`raftlog perf partitions`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.output import emit, fail, output_option, parse_bootstrap

PHASE_NAMES = {"create": "while creating", "idle": "idle", "delete": "while deleting"}


def _files(counts: dict) -> str:
    if not counts:
        return "not measured (no node pids)"
    return ", ".join(f"node {node}: {'?' if n is None else n}" for node, n in sorted(counts.items()))


def _text(report: dict) -> str:
    lines = [
        f"topic of {report['partitions']} partitions, replication factor {report['replication_factor']}",
        f"create: requests done after {report['create_requests_s']} s, every partition has a leader after "
        f"{report['create_leaders_s']} s, {report['served_partitions']} served by their leaders after "
        f"{report['create_served_s']} s",
        f"delete: {report['delete_s']} s (metadata and every node's data)",
        f"open files before: {_files(report['open_files_before'])}",
        f"open files once created: {_files(report['open_files_created'])}",
        f"open files after {report['idle_s']} s idle: {_files(report['open_files_idle'])}",
        f"acks=all produce to another topic at {report['produce_rate']}/s:",
    ]
    for phase, figures in report["produce_latency"].items():
        lines.append(
            f"  {PHASE_NAMES[phase]}: {figures['records']} records, {figures['errors']} errors, "
            f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms"
        )
    lines.append(
        f"load average before {report['load_average_before']}, once created {report['load_average_created']}, "
        f"after {report['load_average_after']} (1, 5, 15 min)"
    )
    return "\n".join(lines)


def _pids(values: tuple[str, ...]) -> dict[int, int]:
    pids = {}
    for value in values:
        node, sep, pid = value.partition("=")
        if not sep or not node.isdigit() or not pid.isdigit():
            raise click.BadParameter(f"{value!r} is not NODE_ID=PID", param_hint="--node-pid")
        pids[int(node)] = int(pid)
    return pids


@click.command(name="partitions")
@click.option("--partitions", default=10_000, show_default=True, help="Partitions of the topic to create and delete.")
@click.option("--replication-factor", default=3, show_default=True)
@click.option(
    "--idle-s", default=15.0, show_default=True, help="Pause after creation before open files are counted again."
)
@click.option("--throughput", default=50, show_default=True, help="acks=all records/s to the other topic.")
@click.option(
    "--served-timeout-s",
    default=1800.0,
    show_default=True,
    help="Longest wait for every partition to be served; then it goes on and reports how many were.",
)
@click.option("--base-port", default=41000, show_default=True, help="gRPC port of node 1 of the bench cluster.")
@click.option(
    "--bootstrap-server",
    default=None,
    help="An existing cluster (host:port,...) instead of a three-node cluster of its own.",
)
@click.option(
    "--node-pid",
    "node_pids",
    multiple=True,
    help="NODE_ID=PID of a node of --bootstrap-server on this host, whose open files are counted.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Where the bench's own cluster keeps its data (a temporary directory inside; default: the system's).",
)
@click.option("--set", "settings", multiple=True, help="KEY=VALUE for every node of the bench's own cluster.")
@output_option
def command(
    partitions,
    replication_factor,
    idle_s,
    throughput,
    served_timeout_s,
    base_port,
    bootstrap_server,
    node_pids,
    work_dir,
    settings,
    output_format,
) -> None:
    """Cost of a topic of many partitions: time to create (until every partition is served) and
    delete it, open files per node, acks=all produce latency to another topic meanwhile."""
    from raftlog.errors import RaftlogError
    from raftlog.limits import MAX_PARTITIONS_PER_TOPIC
    from raftlog.perf.partitions_bench import run_partitions_bench

    if not 1 <= partitions <= MAX_PARTITIONS_PER_TOPIC:
        raise click.UsageError(f"--partitions must be 1..{MAX_PARTITIONS_PER_TOPIC}")
    if replication_factor < 1 or throughput < 1 or idle_s < 0 or served_timeout_s <= 0:
        raise click.UsageError(
            "--replication-factor and --throughput must be >= 1, --idle-s >= 0, --served-timeout-s > 0"
        )
    if node_pids and bootstrap_server is None:
        raise click.UsageError("--node-pid goes with --bootstrap-server (the bench's own nodes are counted anyway)")
    if settings and bootstrap_server is not None:
        raise click.UsageError("--set configures the bench's own cluster; it cannot go with --bootstrap-server")
    extra = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{setting!r} is not KEY=VALUE", param_hint="--set")
        extra[key] = value
    servers = ",".join(parse_bootstrap(bootstrap_server)) if bootstrap_server is not None else None
    try:
        report = run_partitions_bench(
            partitions,
            replication_factor,
            idle_s,
            throughput,
            base_port,
            bootstrap=servers,
            pids=_pids(node_pids),
            extra_config=extra,
            work_dir=work_dir,
            served_timeout_s=served_timeout_s,
            progress=lambda line: click.echo(line, err=True),
        )
    except (RaftlogError, TimeoutError) as exc:
        fail(str(exc))
    emit(output_format, report, _text)
