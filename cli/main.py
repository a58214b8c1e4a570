"""Entry point of the `raftlog` command: one click group, sub-commands registered from their modules."""

from __future__ import annotations

import importlib

import click

from raftlog import __version__

# Each module defines a click command or group named `command` (or a list `commands`).
COMMAND_MODULES = [
    "cli.node",
    "cli.storage",
    "cli.cluster",
    "cli.quorum",
    "cli.configs",
    "cli.topics",
    "cli.partitions",
    "cli.groups",
    "cli.acls",
    "cli.console",
    "cli.log",
    "cli.perf",
    "cli.users",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftlog")
def cli() -> None:
    """raftlog: a Kafka-style commit log with a built-in Raft metadata quorum."""


def register_commands(group: click.Group) -> None:
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        for command in getattr(module, "commands", None) or [module.command]:
            group.add_command(command)


register_commands(cli)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
