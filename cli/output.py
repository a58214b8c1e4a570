"""Shared CLI plumbing: --output text|json, --bootstrap-server, tables and clean error exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

output_option = click.option(
    "--output",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Human table or machine-readable JSON.",
)

bootstrap_option = click.option(
    "--bootstrap-server",
    "bootstrap_server",
    default="127.0.0.1:19091",
    show_default=True,
    envvar="RAFTLOG_BOOTSTRAP_SERVER",
    help="host:port[,host:port...] of any node(s).",
)


def parse_bootstrap(value: str) -> list[str]:
    servers = [s.strip() for s in value.split(",") if s.strip()]
    if not servers:
        raise click.BadParameter("at least one host:port is required", param_hint="--bootstrap-server")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise click.BadParameter(f"{server!r} is not host:port", param_hint="--bootstrap-server")
    return servers


def reachable_bootstrap(value: str) -> list[str]:
    """parse_bootstrap, then fails at once (exit 1) when no server accepts a connection within
    CLI_BOOTSTRAP_CONNECT_TIMEOUT_S: nothing a retry of the call could fix in its timeout."""
    import threading

    import grpc

    from raftlog.channels import sync_channel
    from raftlog.limits import CLI_BOOTSTRAP_CONNECT_TIMEOUT_S

    servers = parse_bootstrap(value)
    channels = [sync_channel(server) for server in servers]
    futures = [grpc.channel_ready_future(channel) for channel in channels]
    ready = threading.Event()
    for future in futures:
        future.add_done_callback(lambda f: ready.set() if not f.cancelled() and f.exception() is None else None)
    try:
        if not ready.wait(CLI_BOOTSTRAP_CONNECT_TIMEOUT_S):
            fail(
                f"BROKER_NOT_AVAILABLE: no bootstrap server ({','.join(servers)}) accepted a connection within "
                f"{CLI_BOOTSTRAP_CONNECT_TIMEOUT_S:.0f} s; is the cluster running and --bootstrap-server right?"
            )
    finally:
        for future in futures:
            future.cancel()
        for channel in channels:
            channel.close()
    return servers


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def emit(output_format: str, data: Any, text: Callable[[Any], str]) -> None:
    """Prints data as JSON or through the text renderer."""
    if output_format == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text(data))


def fail(message: str, exit_code: int = 1) -> None:
    """Prints a one-line error to stderr and exits non-zero."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code)


def admin_call(bootstrap_server: str, action: Callable[[Any], Any]) -> Any:
    """Runs action(Admin) and turns client errors into a one-line message and exit 1."""
    from raftlog.client.admin import Admin
    from raftlog.errors import RaftlogError

    try:
        with Admin(reachable_bootstrap(bootstrap_server)) as admin:
            return action(admin)
    except RaftlogError as exc:
        fail(f"{exc.reason}: {exc.message}")
