"""`raftlog node start`: one node in the foreground, logging to stderr, stopped cleanly by SIGTERM."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys

import click

from cli.output import fail
from raftlog.config import ConfigError, NodeConfig, load_config
from raftlog.storage_format import StorageError, check_cluster_id, format_dirs, read_meta, verify_dirs

config_options = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML configuration file."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key."),
]


def with_config_options(func):
    for option in reversed(config_options):
        func = option(func)
    return func


def load_or_fail(config_path: str | None, overrides: tuple[str, ...]) -> NodeConfig:
    try:
        return load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        fail(f"invalid configuration: {exc}")
        raise  # unreachable: fail exits


def prepare_storage(config: NodeConfig, format_if_empty: bool) -> str:
    """Checks (and with format_if_empty, stamps) the data dirs; returns the cluster id."""
    configured = config["cluster.id"]
    if format_if_empty and all(read_meta(d) is None for d in config.data_dirs):
        if not configured:
            raise StorageError("--format-if-empty needs cluster.id in the configuration")
        format_dirs(config.data_dirs, check_cluster_id(configured), config.node_id)
    return verify_dirs(config.data_dirs, config.node_id, configured)


async def _run_node(config: NodeConfig, cluster_id: str) -> str | None:
    from raftlog.node import Node  # imported here so `raftlog --help` stays fast

    return await Node(config, cluster_id).run()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent(parent_pid: int) -> None:
    """Asks the kernel for SIGTERM (a clean shutdown) when the parent dies; exits now if it already did."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            fail(f"--exit-with-parent: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent_pid:  # it died before the request was in place
        fail(f"--exit-with-parent: process {parent_pid} is gone; not starting")


@click.group(name="node")
def command() -> None:
    """Run a raftlog node."""


@command.command(name="start")
@with_config_options
@click.option("--format-if-empty", is_flag=True, help="Stamp unformatted data dirs with cluster.id first.")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--exit-with-parent",
    "parent_pid",
    type=int,
    default=None,
    metavar="PID",
    help="Stop cleanly when process PID (this node's parent, e.g. `raftlog cluster up`) dies.",
)
def start(config_path, overrides, format_if_empty, log_level, parent_pid) -> None:
    """Start one node in the foreground (SIGTERM or Ctrl-C stops it cleanly)."""
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    config = load_or_fail(config_path, overrides)
    for warning in config.warnings:
        logging.getLogger("raftlog.config").warning("%s", warning)
    try:
        cluster_id = prepare_storage(config, format_if_empty)
    except StorageError as exc:
        fail(str(exc))
    from raftlog import gc_policy
    from raftlog.node import NodeStartError

    gc_policy.enable()

    try:
        failure = asyncio.run(_run_node(config, cluster_id))
    except NodeStartError as exc:
        fail(str(exc))
    if failure is not None:
        fail(f"node {config.node_id} stopped: {failure}")
