"""`raftlog perf ...`: benchmarks that print figures. Each sub-command lives in its own cli.perf_* module."""

from __future__ import annotations

import importlib

import click

PERF_MODULES: list[str] = [
    "cli.perf_quorum",
    "cli.perf_clients",
    "cli.perf_latency",
    "cli.perf_log",
    "cli.perf_failover",
    "cli.perf_group",
    "cli.perf_kafka",
    "cli.perf_reassign",
    "cli.perf_partitions",
]


@click.group(name="perf")
def command() -> None:
    """Benchmarks that print figures (throughput, latency)."""


for _module_name in PERF_MODULES:
    _module = importlib.import_module(_module_name)
    for _command in getattr(_module, "commands", None) or [_module.command]:
        command.add_command(_command)
