"""`raftlog cluster up|describe|unregister|certificate`."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import click

from cli.output import admin_call, bootstrap_option, emit, fail, format_table, output_option
from raftlog.cluster.local import KAFKA_PORT_OFFSET, ClusterLayoutError, LocalCluster
from raftlog.cluster.secure import SecureLayout
from raftlog.config import ConfigError, parse_set_flags, read_env
from raftlog.errors import RaftlogError

NODE_CHECK_INTERVAL_S = 0.5


@click.group(name="cluster")
def command() -> None:
    """Local clusters and cluster description."""


class _Stop(Exception):
    pass


def _raise_stop(signum, frame) -> None:
    raise _Stop()


@command.command(name="up")
@click.option(
    "--nodes",
    default=None,
    type=int,
    help="Number of combined nodes (process.roles=broker,controller, all voters); default 3.",
)
@click.option(
    "--controllers",
    default=None,
    type=int,
    help="Dedicated controllers (process.roles=controller: the voters, no partitions); with --brokers.",
)
@click.option(
    "--brokers",
    default=None,
    type=int,
    help="Broker-only nodes (process.roles=broker: Raft observers holding the partitions); with --controllers.",
)
@click.option("--data-dir", default="./data", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--first-node-id", default=1, show_default=True, type=int, help="Id of the first node (Kafka often uses 0)."
)
@click.option(
    "--base-port",
    default=19091,
    show_default=True,
    type=int,
    help="gRPC port of the first node; the next ones get +1, +2, ...",
)
@click.option(
    "--metrics-base-port", default=None, type=int, help="Metrics port of the first node (default base-port+100)."
)
@click.option(
    "--kafka-base-port",
    default=None,
    type=int,
    help=f"Kafka protocol port of the first node (default base-port+{KAFKA_PORT_OFFSET}; 0: no Kafka listeners).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Config key for every node.")
@click.option(
    "--secure",
    is_flag=True,
    help="TLS everywhere: a local CA and certificates in DATA_DIR/tls, mutual TLS between nodes, "
    "SSL client listeners at base-port+50.., SASL_SSL listeners at base-port+60.. with an admin SCRAM user, "
    "SASL_SSL Kafka protocol listeners (SCRAM or PLAIN logins), ACLs on with User:admin the super user, "
    "DATA_DIR/client.properties and DATA_DIR/admin-scram.properties for --command-config and "
    "DATA_DIR/kafka-client.properties for Kafka clients (kcat -F).",
)
def up(
    nodes,
    controllers,
    brokers,
    first_node_id,
    data_dir,
    base_port,
    metrics_base_port,
    kafka_base_port,
    overrides,
    secure,
) -> None:
    """Run a local cluster of real node processes on 127.0.0.1 until Ctrl-C or SIGTERM.

    Either --nodes N combined nodes, or --controllers C --brokers B: C dedicated controllers
    (node ids first, first+1, ...) and B broker-only nodes after them; clients bootstrap from
    the brokers.

    Settings for every node: RAFTLOG_* environment variables (RAFTLOG_NUM_PARTITIONS=6), then
    --set key=value (which wins); `make run SET='key=value ...'` passes them on."""
    if (controllers is None) != (brokers is None):
        fail("--controllers and --brokers go together (dedicated controllers and broker-only nodes)")
    if controllers is not None and nodes is not None:
        fail("give either --nodes (combined nodes) or --controllers with --brokers, not both")
    if controllers is not None and (controllers < 1 or brokers < 1):
        fail("--controllers and --brokers must be >= 1")
    if controllers is not None:
        nodes = controllers + brokers
    elif nodes is None:
        nodes = 3
    if kafka_base_port is None:
        kafka_base_port = base_port + KAFKA_PORT_OFFSET
    try:
        extra: dict[str, object] = {**read_env(os.environ), **parse_set_flags(overrides)}
        cluster = LocalCluster(
            data_dir,
            nodes,
            base_port,
            metrics_base_port,
            extra,
            first_node_id=first_node_id,
            exit_with_parent=True,
            secure=secure,
            kafka_base_port=kafka_base_port,
            controllers=controllers,
        )
        warnings = cluster.check_configs()
    except (ClusterLayoutError, ConfigError) as exc:
        fail(str(exc))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        cluster.start()
        leader = cluster.wait_for_leader(timeout_s=60)
        cluster.wait_for_brokers(len(cluster.broker_ids), timeout_s=60)
        click.echo(_ready_line(cluster, leader))
        if cluster.secure is not None:
            cluster.ensure_admin_user()
            click.echo(
                f"TLS: certificates in {cluster.secure.tls_dir}; connect with the admin certificate: "
                f"--bootstrap-server {cluster.bootstrap_servers} --command-config {cluster.secure.properties_path}"
            )
            click.echo(
                "SCRAM: user admin (password in the files) on the SASL_SSL listeners: "
                f"--bootstrap-server {cluster.sasl_bootstrap_servers} "
                f"--command-config {cluster.secure.scram_properties_path}"
                + (
                    f"; Kafka clients (SASL_SSL): kcat -F {cluster.secure.kafka_properties_path} "
                    f"-b {cluster.kafka_bootstrap_servers}"
                    if cluster.kafka_bootstrap_servers
                    else ""
                )
            )
            click.echo(
                "ACLs are on and User:admin (that certificate, that SCRAM user) is the super user: "
                "`raftlog acls add` lets others in; `raftlog users scram set` and `raftlog cluster certificate` make them"
            )
        sys.stdout.flush()
        _watch(cluster)
    except _Stop:
        click.echo("stopping cluster...", err=True)
    except (TimeoutError, RuntimeError, RaftlogError) as exc:
        cluster.stop()
        fail(str(exc))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cluster.stop()
    click.echo("cluster stopped", err=True)


def _ready_line(cluster: LocalCluster, leader: int) -> str:
    specs = list(cluster.specs.values())
    metrics = ", ".join(
        f"node {s.node_id} http://{s.host}:{s.metrics_port}/metrics" if s.metrics_port else f"node {s.node_id} off"
        for s in specs
    )
    settings = " ".join(f"{k}={v}" for k, v in cluster.extra_config.items())
    shape = (
        f"{len(specs)} nodes"
        if cluster.controllers is None
        else f"{len(cluster.controller_ids)} controllers {cluster.controller_ids} and "
        f"{len(cluster.broker_ids)} brokers {cluster.broker_ids}"
    )
    return (
        f"raftlog cluster {cluster.cluster_id} ready: {shape}, leader {leader}, every broker registered "
        f"and unfenced, bootstrap servers {cluster.bootstrap_servers}"
        + (f", Kafka protocol on {cluster.kafka_bootstrap_servers}" if cluster.kafka_bootstrap_servers else "")
        + f", metrics {metrics}"
        + (f", settings {settings}" if settings else "")
        + f" (logs in {cluster.data_dir}/node-*/node.log)"
    )


def _watch(cluster: LocalCluster) -> None:
    """Reports nodes that exit on their own; runs until a signal stops the cluster."""
    reported: set[int] = set()
    while True:
        for node_id, process in cluster.processes.items():
            if process.poll() is not None and node_id not in reported:
                reported.add(node_id)
                click.echo(
                    f"node {node_id} exited with code {process.returncode}; see {cluster.specs[node_id].log_path}",
                    err=True,
                )
        time.sleep(NODE_CHECK_INTERVAL_S)


def _brokers_text(data) -> str:
    rows = [
        (b["id"], f"{b['host']}:{b['port']}", b["rack"] or "", "fenced" if b["fenced"] else "active", b["epoch"])
        for b in data["brokers"]
    ]
    header = (
        f"Cluster id: {data['cluster_id']}\nController: {data['controller_id']}\n"
        f"CurrentVoters: {data['current_voters']}\nCurrentObservers: {data['current_observers']}\n"
    )
    return header + format_table(["BrokerId", "Endpoint", "Rack", "State", "Epoch"], rows)


def _describe(admin) -> dict:
    cluster = admin.describe_cluster()
    quorum = admin.describe_quorum()
    return {
        **cluster,
        "current_voters": quorum["current_voters"],
        "current_observers": quorum["current_observers"],
    }


@command.command(name="describe")
@bootstrap_option
@output_option
def describe(bootstrap_server, output_format) -> None:
    """Brokers, their endpoints, fenced or not; the metadata quorum's voters and observers."""
    data = admin_call(bootstrap_server, _describe)
    emit(output_format, data, _brokers_text)


@command.command(name="certificate")
@click.argument("name")
@click.option("--data-dir", default="./data", show_default=True, type=click.Path(file_okay=False))
def certificate(name, data_dir) -> None:
    """A client certificate for User:NAME from a `cluster up --secure` cluster's CA, and
    DATA_DIR/NAME.properties for --command-config (what NAME may do is up to `raftlog acls`)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        fail(f"{name!r}: a user name is letters, digits, '.', '_' and '-'")
    try:
        path = SecureLayout.issue_user(Path(data_dir), name)
    except FileNotFoundError as exc:
        fail(str(exc))
    click.echo(f"User:{name}: connect with --command-config {path}")


@command.command(name="unregister")
@click.option("--id", "broker_id", type=int, required=True, help="The broker to forget.")
@bootstrap_option
@output_option
def unregister(broker_id, bootstrap_server, output_format) -> None:
    """Forget a decommissioned broker (Kafka's UnregisterBroker). Refused while it is alive (stop it
    first) or still holds a replica (move them off with `partitions reassign` first)."""
    admin_call(bootstrap_server, lambda admin: admin.unregister_broker(broker_id))
    emit(output_format, {"unregistered": broker_id}, lambda _: f"Broker {broker_id} unregistered.")
