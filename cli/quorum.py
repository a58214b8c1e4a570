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
