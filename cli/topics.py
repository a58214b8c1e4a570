"""`raftlog topics create|list|describe|alter|delete`, like kafka-topics."""

from __future__ import annotations

import click

from cli.output import admin_call, bootstrap_option, emit, fail, output_option


def _parse_configs(items: tuple[str, ...]) -> dict[str, str]:
    configs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--config {item!r}: expected key=value")
        configs[key.strip()] = value.strip()
    return configs


@click.group(name="topics")
def command() -> None:
    """Create, list, describe, alter and delete topics."""


@command.command(name="create")
@click.option("--topic", required=True)
@click.option("--partitions", type=int, default=None, help="Default: the broker's num.partitions.")
@click.option("--replication-factor", type=int, default=None, help="Default: default.replication.factor.")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE", help="A topic config (repeatable).")
@click.option("--if-not-exists", is_flag=True, help="Succeed if the topic already exists.")
@bootstrap_option
@output_option
def create(topic, partitions, replication_factor, configs, if_not_exists, bootstrap_server, output_format) -> None:
    """Create a topic."""
    config_values = _parse_configs(configs)
    if partitions is not None and partitions < 1:
        fail("--partitions must be at least 1")
    if replication_factor is not None and replication_factor < 1:
        fail("--replication-factor must be at least 1")

    def action(admin):
        from raftlog.errors import RaftlogError

        try:
            return {
                "topic": topic,
                "topic_id": admin.create_topic(topic, partitions, replication_factor, config_values),
                "created": True,
            }
        except RaftlogError as exc:
            if if_not_exists and exc.reason == "TOPIC_ALREADY_EXISTS":
                return {"topic": topic, "created": False}
            raise

    result = admin_call(bootstrap_server, action)
    emit(output_format, result, lambda r: f"Created topic {topic}." if r["created"] else f"Topic {topic} exists.")


@command.command(name="list")
@bootstrap_option
@output_option
def list_topics(bootstrap_server, output_format) -> None:
    """List topic names."""
    names = admin_call(bootstrap_server, lambda admin: admin.list_topics())
    emit(output_format, names, lambda n: "\n".join(n))


def _selected_partitions(
    topic: dict, min_isr: int, under_replicated: bool, unavailable: bool, under_min_isr: bool
) -> list[dict]:
    rows = topic["partitions"]
    if under_replicated:
        rows = [p for p in rows if len(p["isr"]) < len(p["replicas"])]
    if unavailable:
        rows = [p for p in rows if p["leader"] < 0 or p["leader"] in p["offline_replicas"]]
    if under_min_isr:
        rows = [p for p in rows if len(p["isr"]) < min_isr]
    return rows


def _describe_text(topics: list[dict]) -> str:
    lines = []
    for t in topics:
        if t["configs"] is None:  # DescribeConfigs on the topic refused: the rest is still shown
            configs = "(unavailable: DescribeConfigs not allowed)"
        else:
            configs = ",".join(f"{k}={v}" for k, v in sorted(t["configs"].items()))
        lines.append(
            f"Topic: {t['topic']}\tTopicId: {t['topic_id']}\tPartitionCount: {t['partition_count']}\t"
            f"ReplicationFactor: {t['replication_factor']}\tConfigs: {configs}"
        )
        for p in t["partitions"]:
            leader = "none" if p["leader"] < 0 else p["leader"]
            lines.append(
                f"\tTopic: {t['topic']}\tPartition: {p['partition']}\tLeader: {leader}\t"
                f"Replicas: {','.join(map(str, p['replicas']))}\tIsr: {','.join(map(str, p['isr']))}"
                + (f"\tOffline: {','.join(map(str, p['offline_replicas']))}" if p["offline_replicas"] else "")
            )
    return "\n".join(lines)


@command.command(name="describe")
@click.option("--topic", default=None, help="One topic (default: all).")
@click.option("--under-replicated-partitions", is_flag=True, help="Only partitions whose ISR is smaller than replicas.")
@click.option("--unavailable-partitions", is_flag=True, help="Only partitions without a live leader.")
@click.option(
    "--under-min-isr-partitions", is_flag=True, help="Only partitions whose ISR is below min.insync.replicas."
)
@bootstrap_option
@output_option
def describe(
    topic,
    under_replicated_partitions,
    unavailable_partitions,
    under_min_isr_partitions,
    bootstrap_server,
    output_format,
) -> None:
    """Describe topics: id, partitions, leaders, replicas, ISR, configs."""
    filtering = under_replicated_partitions or unavailable_partitions or under_min_isr_partitions

    def action(admin):
        topics = admin.describe_topics([topic] if topic else None, include_configs=True)
        for t in topics:
            min_isr = 1
            if under_min_isr_partitions:
                entries = admin.describe_configs("topics", t["topic"], include_static=True)
                min_isr = int(next(e["value"] for e in entries if e["name"] == "min.insync.replicas"))
            t["partitions"] = _selected_partitions(
                t, min_isr, under_replicated_partitions, unavailable_partitions, under_min_isr_partitions
            )
        return [t for t in topics if t["partitions"] or not filtering]

    emit(output_format, admin_call(bootstrap_server, action), _describe_text)


@command.command(name="alter")
@click.option("--topic", required=True)
@click.option("--partitions", type=int, required=True, help="New (larger) partition count.")
@bootstrap_option
@output_option
def alter(topic, partitions, bootstrap_server, output_format) -> None:
    """Increase a topic's partition count."""
    admin_call(bootstrap_server, lambda admin: admin.create_partitions(topic, partitions))
    emit(
        output_format,
        {"topic": topic, "partitions": partitions},
        lambda r: f"Topic {topic} now has {partitions} partitions.",
    )


@command.command(name="delete")
@click.option("--topic", required=True)
@click.option("--if-exists", is_flag=True, help="Succeed if the topic does not exist.")
@bootstrap_option
@output_option
def delete(topic, if_exists, bootstrap_server, output_format) -> None:
    """Delete a topic (its data is removed from every broker)."""

    def action(admin):
        from raftlog.errors import RaftlogError

        try:
            admin.delete_topic(topic)
            return {"topic": topic, "deleted": True}
        except RaftlogError as exc:
            if if_exists and exc.reason == "UNKNOWN_TOPIC_OR_PARTITION":
                return {"topic": topic, "deleted": False}
            raise

    result = admin_call(bootstrap_server, action)
    emit(output_format, result, lambda r: f"Deleted topic {topic}." if r["deleted"] else f"No topic {topic}.")
