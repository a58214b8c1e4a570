"""`raftlog partitions elect-leaders|reassign|list-reassignments` (kafka-leader-election, kafka-reassign-partitions)."""

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
@click.option("--generate", is_flag=True, help="Print the current and a proposed plan.")
@click.option("--execute", is_flag=True, help="Start the moves of --reassignment-json-file.")
@click.option("--verify", is_flag=True, help="Report progress; remove the throttle once done.")
@click.option("--cancel", is_flag=True, help="Revert the moves of the plan still running.")
@click.option("--topics-to-move-json-file", type=click.Path(dir_okay=False), help='{"topics":[{"topic":"t"}]}')
@click.option("--broker-list", help="Brokers the proposed plan may use: 1,2,3 (--generate).")
@click.option("--reassignment-json-file", type=click.Path(dir_okay=False), help="A plan, as --generate prints.")
@click.option("--throttle", type=int, default=None, help="Replication bytes/s of the moving replicas (--execute).")
@click.option(
    "--replica-alter-log-dirs-throttle", type=int, default=None, help="Accepted for Kafka's scripts; ignored."
)
@click.option("--preserve-throttles", is_flag=True, help="--verify/--cancel: leave the throttle configs in place.")
@click.option("--topic", default=None, help="One partition only: with --partition and --replicas.")
@click.option("--partition", type=int, default=None)
@click.option("--replicas", default=None, help="Target replica broker ids, preferred leader first: 1,2,3")
@bootstrap_option
@output_option
def reassign(
    generate,
    execute,
    verify,
    cancel,
    topics_to_move_json_file,
    broker_list,
    reassignment_json_file,
    throttle,
    replica_alter_log_dirs_throttle,
    preserve_throttles,
    topic,
    partition,
    replicas,
    bootstrap_server,
    output_format,
) -> None:
    """Move replicas between brokers, as kafka-reassign-partitions: --generate a plan, --execute it
    (new replicas catch up, then the old ones leave), --verify until complete, or --cancel it."""
    from cli import reassign_plans

    modes = [
        name
        for name, on in (("generate", generate), ("execute", execute), ("verify", verify), ("cancel", cancel))
        if on
    ]
    if len(modes) > 1:
        fail(f"give one of --generate, --execute, --verify, --cancel, not {' and '.join('--' + m for m in modes)}")
    mode = modes[0] if modes else None
    if mode is None:
        if topic is None or partition is None or replicas is None:
            fail("give --generate, --execute, --verify or --cancel (or --topic, --partition and --replicas)")
        _reassign_one(topic, partition, replicas, bootstrap_server, output_format)
        return
    if replica_alter_log_dirs_throttle is not None:
        click.echo(
            "Note: --replica-alter-log-dirs-throttle is ignored: a broker has no moves between its own log dirs.",
            err=True,
        )
    if mode == "generate":
        if topics_to_move_json_file is None or broker_list is None:
            fail("--generate needs --topics-to-move-json-file and --broker-list")
        reassign_plans.generate(topics_to_move_json_file, broker_list, bootstrap_server, output_format)
        return
    if reassignment_json_file is None:
        fail(f"--{mode} needs --reassignment-json-file")
    if throttle is not None and mode != "execute":
        fail("--throttle goes with --execute")
    if throttle is not None and throttle < 1:
        fail(f"--throttle must be at least 1 byte per second, not {throttle}")
    if mode == "execute":
        reassign_plans.execute(reassignment_json_file, throttle, bootstrap_server, output_format)
    elif mode == "verify":
        reassign_plans.verify(reassignment_json_file, preserve_throttles, bootstrap_server, output_format)
    else:
        reassign_plans.cancel(reassignment_json_file, preserve_throttles, bootstrap_server, output_format)


def _reassign_one(topic, partition, replicas, bootstrap_server, output_format) -> None:
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


@command.command(name="list-reassignments")
@bootstrap_option
@output_option
def list_reassignments(bootstrap_server, output_format) -> None:
    """The partitions being reassigned now (Kafka's ListPartitionReassignments)."""
    rows = admin_call(bootstrap_server, lambda admin: admin.list_partition_reassignments())

    def text(data):
        if not data:
            return "No partition reassignment is in progress."
        table = [
            (r["topic"], r["partition"], _ids(r["replicas"]), _ids(r["adding_replicas"]), _ids(r["removing_replicas"]))
            for r in data
        ]
        return format_table(["Topic", "Partition", "Replicas", "Adding", "Removing"], table)

    emit(output_format, rows, text)


def _ids(ids) -> str:
    return ",".join(map(str, ids)) or "-"
