"""`raftlog storage format|random-uuid`: stamp data dirs with the cluster and node id."""

from __future__ import annotations

import click

from cli.node import load_or_fail, with_config_options
from cli.output import fail
from raftlog.storage_format import StorageError, check_cluster_id, format_dirs, random_cluster_id


@click.group(name="storage")
def command() -> None:
    """Prepare data directories."""


@command.command(name="random-uuid")
def random_uuid() -> None:
    """Print a new cluster id."""
    click.echo(random_cluster_id())


@command.command(name="format")
@with_config_options
@click.option("--cluster-id", "-t", help="Cluster id (default: cluster.id from the configuration).")
@click.option("--ignore-formatted", is_flag=True, help="Skip dirs already stamped for this cluster and node.")
def format_command(config_path, overrides, cluster_id, ignore_formatted) -> None:
    """Stamp this node's log.dirs and metadata.log.dir with the cluster id and node id."""
    config = load_or_fail(config_path, overrides)
    cluster_id = cluster_id or config["cluster.id"]
    if not cluster_id:
        fail("a cluster id is needed: --cluster-id or cluster.id in the configuration")
    try:
        stamped = format_dirs(config.data_dirs, check_cluster_id(cluster_id), config.node_id, ignore_formatted)
    except StorageError as exc:
        fail(str(exc))
    for directory in stamped:
        click.echo(f"Formatted {directory} for cluster {cluster_id}, node {config.node_id}")
