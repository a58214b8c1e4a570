"""`raftlog users scram set|delete|describe`: SCRAM credentials (kafka-configs --entity-type users
--alter --add-config 'SCRAM-SHA-256=[...]' in Kafka). The password is read from stdin or a prompt,
never from the command line (it would show in `ps` and shell history), and is never printed;
describe shows mechanisms and iterations only."""

from __future__ import annotations

import sys

import click

from cli.output import admin_call, bootstrap_option, emit, fail, format_table, output_option
from raftlog.scram import DEFAULT_ITERATIONS, MAX_ITERATIONS, MECHANISMS, MIN_ITERATIONS

_mechanism_option = click.option(
    "--mechanism",
    type=click.Choice(list(MECHANISMS), case_sensitive=False),
    default="SCRAM-SHA-256",
    show_default=True,
    help="SCRAM mechanism.",
)


@click.group(name="users")
def command() -> None:
    """Users and their credentials."""


@command.group(name="scram")
def scram_group() -> None:
    """SCRAM-SHA-256/512 credentials, stored in the metadata quorum (salted keys only)."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("UNACCEPTABLE_CREDENTIAL: the password is empty")
    return password


@scram_group.command(name="set")
@click.option("--user", required=True, help="User name (the principal is User:<name>).")
@_mechanism_option
@click.option(
    "--iterations",
    type=click.IntRange(MIN_ITERATIONS, MAX_ITERATIONS),
    default=DEFAULT_ITERATIONS,
    show_default=True,
    help="PBKDF2 iterations.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (no prompt).")
@bootstrap_option
@output_option
def set_credential(user, mechanism, iterations, password_stdin, bootstrap_server, output_format) -> None:
    """Create or replace USER's credential for one mechanism."""
    password = _read_password(password_stdin)
    mechanism = mechanism.upper()
    admin_call(bootstrap_server, lambda admin: admin.upsert_scram_credential(user, mechanism, password, iterations))
    result = {"user": user, "mechanism": mechanism, "iterations": iterations, "changed": "set"}
    emit(
        output_format,
        result,
        lambda r: f"Set {r['mechanism']} credential of user {r['user']} ({r['iterations']} iterations).",
    )


@scram_group.command(name="delete")
@click.option("--user", required=True, help="User name.")
@_mechanism_option
@bootstrap_option
@output_option
def delete_credential(user, mechanism, bootstrap_server, output_format) -> None:
    """Delete USER's credential for one mechanism (sessions made from it stop working at once)."""
    mechanism = mechanism.upper()
    admin_call(bootstrap_server, lambda admin: admin.delete_scram_credential(user, mechanism))
    result = {"user": user, "mechanism": mechanism, "changed": "deleted"}
    emit(output_format, result, lambda r: f"Deleted {r['mechanism']} credential of user {r['user']}.")


def _describe_text(described) -> str:
    rows = [(user, c["mechanism"], c["iterations"]) for user, creds in described.items() for c in creds]
    return format_table(["User", "Mechanism", "Iterations"], rows)


@scram_group.command(name="describe")
@click.option("--user", "users", multiple=True, help="Only this user (repeatable); default: every user.")
@bootstrap_option
@output_option
def describe(users, bootstrap_server, output_format) -> None:
    """Users with SCRAM credentials: mechanisms and iterations (never a salt, key or password)."""
    described = admin_call(bootstrap_server, lambda admin: admin.describe_user_scram_credentials(list(users)))
    emit(output_format, described, _describe_text)
