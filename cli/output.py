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

_bootstrap_server_option = click.option(
    "--bootstrap-server",
    "bootstrap_server",
    default="127.0.0.1:19091",
    show_default=True,
    envvar="RAFTLOG_BOOTSTRAP_SERVER",
    help="host:port[,host:port...] of any node(s).",
)
_SECURITY_KEY = "raftlog.client_security"  # click context meta: the --command-config settings as client kwargs


def _read_command_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    from raftlog.tls import ClientSecurity, TlsError, client_kwargs, read_properties

    settings: dict[str, str | None] = {}
    if value is not None:
        try:
            settings = client_kwargs(read_properties(value))
            ClientSecurity.from_settings(**settings)  # checked now: a bad file is one line and exit 1
        except TlsError as exc:
            raise click.BadParameter(str(exc), param_hint="--command-config") from None
    ctx.meta[_SECURITY_KEY] = settings


_command_config_option = click.option(
    "--command-config",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="RAFTLOG_COMMAND_CONFIG",
    expose_value=False,
    callback=_read_command_config,
    help="Client properties file (security.protocol, ssl.truststore.location, ssl.certificate.location, "
    "ssl.key.location, sasl.mechanism, sasl.username, sasl.password or sasl.jaas.config), as Kafka's tools take.",
)


def bootstrap_option(command):
    """--bootstrap-server and --command-config: where the cluster is and how to connect to it."""
    return _bootstrap_server_option(_command_config_option(command))


def client_security() -> dict[str, Any]:
    """The --command-config settings as keyword arguments of Admin, Producer and Consumer."""
    return dict(click.get_current_context().meta.get(_SECURITY_KEY, {}))


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
    from raftlog.tls import ClientSecurity, ProtocolCheck

    servers = parse_bootstrap(value)
    security = ClientSecurity.from_settings(**client_security())
    channels = [sync_channel(server, security) for server in servers]
    futures = [grpc.channel_ready_future(channel) for channel in channels]
    ready = threading.Event()
    for future in futures:
        future.add_done_callback(lambda f: ready.set() if not f.cancelled() and f.exception() is None else None)
    try:
        if not ready.wait(CLI_BOOTSTRAP_CONNECT_TIMEOUT_S):
            for server in servers:  # a TLS client on a plaintext port (or the reverse) says so
                mismatch = ProtocolCheck(security).after_failure(server)
                if mismatch is not None:
                    fail(f"{mismatch.reason}: {mismatch.message}")
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
        with Admin(reachable_bootstrap(bootstrap_server), **client_security()) as admin:
            return action(admin)
    except RaftlogError as exc:
        fail(f"{exc.reason}: {exc.message}")
