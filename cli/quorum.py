"""`raftlog quorum describe --status|--replication`, like kafka-metadata-quorum."""

from __future__ import annotations

import click

from cli.output import admin_call, bootstrap_option, emit, format_table, output_option

STATUS_KEYS = [
    "cluster_id",
    "leader_id",
    "leader_epoch",
    "high_watermark",
    "max_follower_lag",
    "current_voters",
    "current_observers",
]
REPLICATION_KEYS = ["node_id", "log_end_offset", "lag", "last_fetch_ms_ago", "last_caught_up_ms_ago", "status"]


@click.group(name="quorum")
def command() -> None:
    """The metadata quorum (Raft)."""


def _status_text(status) -> str:
    labels = {
        "cluster_id": "ClusterId",
        "leader_id": "LeaderId",
        "leader_epoch": "LeaderEpoch",
        "high_watermark": "HighWatermark",
        "max_follower_lag": "MaxFollowerLag",
        "current_voters": "CurrentVoters",
        "current_observers": "CurrentObservers",
    }
    width = max(len(label) for label in labels.values()) + 1
    return "\n".join(f"{labels[k] + ':':<{width}} {status[k]}" for k in STATUS_KEYS)


def _replication_text(rows) -> str:
    headers = ["NodeId", "LogEndOffset", "Lag", "LastFetchMsAgo", "LastCaughtUpMsAgo", "Status"]
    return format_table(headers, [[row[k] for k in REPLICATION_KEYS] for row in rows])


@command.command(name="describe")
@click.option("--status", "mode", flag_value="status", default=True, help="Leader, epoch, high watermark, voters.")
@click.option("--replication", "mode", flag_value="replication", help="One row per voter and observer.")
@bootstrap_option
@output_option
def describe(mode, bootstrap_server, output_format) -> None:
    """Describe the metadata quorum."""
    quorum = admin_call(bootstrap_server, lambda admin: admin.describe_quorum())
    if mode == "replication":
        emit(output_format, quorum["replication"], _replication_text)
    else:
        emit(output_format, {k: quorum[k] for k in STATUS_KEYS}, _status_text)


def _change_text(result) -> str:
    return f"Voters now {result['voters']} (configuration entry at offset {result['offset']})."


@command.command(name="add-controller")
@click.option("--controller-id", required=True, type=click.IntRange(0), help="Node id of the controller to add.")
@click.option(
    "--controller-address",
    default="",
    help="host:port its peers reach it at (default: the address it gave while following as an observer).",
)
@bootstrap_option
@output_option
def add_controller(controller_id, controller_address, bootstrap_server, output_format) -> None:
    """Make a controller that follows the metadata log as an observer a voter (KIP-853).

    Start the new node first with process.roles=controller and controller.quorum.voters naming
    the current voters; it catches up as an observer, and this waits until it has (refusing a
    second change while one is uncommitted)."""
    result = admin_call(bootstrap_server, lambda admin: admin.add_raft_voter(controller_id, controller_address))
    emit(output_format, result, _change_text)


@command.command(name="remove-controller")
@click.option("--controller-id", required=True, type=click.IntRange(0), help="Node id of the voter to remove.")
@bootstrap_option
@output_option
def remove_controller(controller_id, bootstrap_server, output_format) -> None:
    """Remove one voter from the metadata quorum (KIP-853); the active controller may remove itself
    (it steps down once the change is committed). Stop the removed node afterwards."""
    result = admin_call(bootstrap_server, lambda admin: admin.remove_raft_voter(controller_id))
    emit(output_format, result, _change_text)
