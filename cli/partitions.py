"""`raftlog partitions elect-leaders|reassign`."""

from __future__ import annotations

import click

from cli.output import admin_call, bootstrap_option, emit, fail, format_table, output_option


@click.group(name="partitions")
def command() -> None:
    """Leader elections and replica reassignment."""


@command.command(name="elect-leaders")
@click.option("--election-type", type=click.Choice(["preferred", "unclean"]), default="preferred", show_default=True)
@click.option("--topic", default=None)
@click.option("--partition", type=int, default=None)
@click.option("--all-topic-partitions", is_flag=True, help="Every partition of every topic.")
@bootstrap_option
@output_option
def elect_leaders(election_type, topic, partition, all_topic_partitions, bootstrap_server, output_format) -> None:
    """Elect the preferred (or, where allowed, an unclean) leader."""
    if all_topic_partitions == (topic is not None):
        fail("give --topic (with --partition) or --all-topic-partitions")
    if topic is not None and partition is None:
        fail("--topic needs --partition")
    targets = None if all_topic_partitions else [(topic, partition)]
    results = admin_call(bootstrap_server, lambda admin: admin.elect_leaders(election_type, targets))

    def text(rows):
        table = [(r["topic"], r["partition"], r["error"] or "elected", r["message"] or "") for r in rows]
        return format_table(["Topic", "Partition", "Result", "Detail"], table)

    emit(output_format, results, text)
    if any(r["error"] not in (None, "ELECTION_NOT_NEEDED") for r in results):
        raise SystemExit(1)


@command.command(name="reassign")
@click.option("--topic", required=True)
@click.option("--partition", type=int, required=True)
@click.option("--replicas", required=True, help="Target replica broker ids, preferred leader first: 1,2,3")
@bootstrap_option
@output_option
def reassign(topic, partition, replicas, bootstrap_server, output_format) -> None:
    """Move a partition to new replicas (new ones catch up before the old ones are dropped)."""
    try:
        target = [int(r) for r in replicas.split(",") if r.strip()]
    except ValueError:
        fail(f"--replicas {replicas!r}: expected broker ids like 1,2,3")
    admin_call(bootstrap_server, lambda admin: admin.reassign_partition(topic, partition, target))
    emit(
        output_format,
        {"topic": topic, "partition": partition, "replicas": target},
        lambda r: f"Reassignment of {topic}-{partition} to {replicas} started.",
    )
