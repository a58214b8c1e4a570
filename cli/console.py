"""`raftlog produce TOPIC` and `raftlog consume TOPIC`: console producer and consumer."""

from __future__ import annotations

import json
import signal
import sys
import time

import click

from cli.output import bootstrap_option, client_security, fail, output_option, reachable_bootstrap


def _properties(items: tuple[str, ...], known: set[str]) -> dict[str, str]:
    props = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            fail(f"--property {item!r}: expected one of {', '.join(sorted(known))} as key=value")
        props[key] = value
    return props


# While a retriable error holds a batch back, the console producer says so at most this often.
RETRY_NOTICE_INTERVAL_S = 5.0


class _RetryNotices:
    """on_retry for the Producer: one line on stderr per partition and reason, then again every
    RETRY_NOTICE_INTERVAL_S while it lasts, so a long wait is never silent."""

    def __init__(self, delivery_timeout_ms: int):
        self._delivery_timeout_ms = delivery_timeout_ms
        self._last: dict[tuple[str, int, str], float] = {}

    def __call__(self, topic: str, partition: int, error, seconds_left: float) -> None:
        key = (topic, partition, error.reason)
        now = time.monotonic()
        if now - self._last.get(key, -RETRY_NOTICE_INTERVAL_S) < RETRY_NOTICE_INTERVAL_S:
            return
        self._last[key] = now
        click.echo(
            f"waiting: {topic}-{partition}: {error.reason} ({error.message}); retrying for up to "
            f"{max(0.0, seconds_left):.0f} s more (--delivery-timeout-ms {self._delivery_timeout_ms})",
            err=True,
        )


@click.command(name="produce")
@click.argument("topic")
@click.option("--acks", type=click.Choice(["all", "-1", "1", "0"]), default="all", show_default=True)
@click.option("--property", "properties", multiple=True, help="parse.key=true, key.separator=:")
@click.option("--partition", type=int, default=None, help="Send every record to this partition.")
@click.option("--compression-type", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none")
@click.option(
    "--delivery-timeout-ms",
    type=click.IntRange(min=1),
    default=120_000,
    show_default=True,
    help="How long a record is retried (NOT_ENOUGH_REPLICAS, no leader, ...) before it fails.",
)
@bootstrap_option
@output_option
def produce(
    topic, acks, properties, partition, compression_type, delivery_timeout_ms, bootstrap_server, output_format
) -> None:
    """Send each line of stdin as a record (with --output json: one line per record, its partition and offset)."""
    from raftlog.client.producer import Producer
    from raftlog.errors import RaftlogError

    props = _properties(properties, {"parse.key", "key.separator"})
    parse_key = props.get("parse.key", "false").lower() == "true"
    separator = props.get("key.separator", "\t")
    compression = None if compression_type == "none" else compression_type
    try:
        producer = Producer(
            reachable_bootstrap(bootstrap_server),
            acks=acks if acks == "all" else int(acks),
            compression_type=compression,
            delivery_timeout_ms=delivery_timeout_ms,
            on_retry=_RetryNotices(delivery_timeout_ms),
            **client_security(),
        )
    except ValueError as exc:
        fail(str(exc))
    futures: list = []
    try:
        for line in sys.stdin:
            line = line.rstrip("\n")
            key = None
            if parse_key:
                if separator not in line:
                    fail(f"line {len(futures) + 1} has no key separator {separator!r}")
                key, line = line.split(separator, 1)
            futures.append(producer.send(topic, line, key=key, partition=partition))
        producer.flush()
        acknowledged = [future.result() for future in futures]
    except RaftlogError as exc:
        fail(f"{exc.reason}: {exc.message}")
    finally:
        producer.close()
    if output_format == "json":
        for metadata in acknowledged:
            click.echo(json.dumps({"topic": topic, "partition": metadata.partition, "offset": metadata.offset}))
    click.echo(f"Produced {len(futures)} records to {topic}.", err=True)


def _render(record, print_key: bool, print_offset: bool, separator: str, output_format: str) -> str:
    def text(value):
        return None if value is None else value.decode("utf-8", "backslashreplace")

    if output_format == "json":
        return json.dumps(
            {
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": text(record.key),
                "value": text(record.value),
                "headers": {k: text(v) for k, v in record.headers},
            }
        )
    parts = []
    if print_offset:
        parts.append(f"{record.partition}:{record.offset}")
    if print_key:
        parts.append(text(record.key) or "null")
    parts.append(text(record.value) or "null")
    return separator.join(parts)


@click.command(name="consume")
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset (default: the end).")
@click.option("--partition", type=int, default=None, help="Only this partition.")
@click.option("--offset", type=int, default=None, help="Start offset (needs --partition).")
@click.option("--max-messages", type=int, default=None, help="Exit after this many records.")
@click.option("--timeout-ms", type=int, default=None, help="Exit when no record arrives for this long.")
@click.option("--property", "properties", multiple=True, help="print.key=true, print.offset=true, key.separator=:")
@click.option("--output", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--group", default=None, help="Join this consumer group (subscribe) and commit what was printed.")
@click.option("--group-instance-id", default=None, help="With --group: a static member id (group.instance.id).")
@bootstrap_option
def consume(
    topic,
    from_beginning,
    partition,
    offset,
    max_messages,
    timeout_ms,
    properties,
    output_format,
    group,
    group_instance_id,
    bootstrap_server,
) -> None:
    """Print records of a topic to stdout (with --group: as a member of a consumer group)."""
    from raftlog.client.consumer import Consumer, TopicPartition
    from raftlog.errors import RaftlogError

    props = _properties(properties, {"print.key", "print.offset", "key.separator"})
    if offset is not None and partition is None:
        fail("--offset needs --partition")
    if group is not None and (partition is not None or offset is not None):
        fail("--group takes the partitions the group assigns; it cannot go with --partition or --offset")
    if group_instance_id is not None and group is None:
        fail("--group-instance-id needs --group")
    print_key = props.get("print.key", "false").lower() == "true"
    print_offset = props.get("print.offset", "false").lower() == "true"
    separator = props.get("key.separator", "\t")
    try:
        # In a group, what was printed is committed after each poll (at least once: a record is
        # committed only once it is out), so auto-commit, which would also commit records of a
        # poll cut short by --max-messages, is off.
        consumer = Consumer(
            reachable_bootstrap(bootstrap_server),
            group_id=group,
            group_instance_id=group_instance_id,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
            **client_security(),
        )
    except ValueError as exc:
        fail(str(exc))
    count = 0
    uncommitted: dict = {}  # printed, not yet committed (a failed commit is tried again next poll)
    signal.signal(signal.SIGTERM, _interrupt)  # a clean stop: leave the group at once
    try:
        if group is not None:
            consumer.subscribe([topic])
        else:
            # A topic or partition the metadata does not have is an error no retry fixes: say so now.
            partitions = _partitions_of(bootstrap_server, topic)
            if partition is not None:
                if partition not in partitions:
                    fail(f"UNKNOWN_TOPIC_OR_PARTITION: {topic} has no partition {partition} (it has {len(partitions)})")
                partitions = [partition]
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            if offset is not None:
                consumer.seek(TopicPartition(topic, partition), offset)
        idle_ms = 0
        while max_messages is None or count < max_messages:
            records = consumer.poll(timeout_ms=500)
            idle_ms = 0 if records else idle_ms + 500
            for record in records[: None if max_messages is None else max_messages - count]:
                click.echo(_render(record, print_key, print_offset, separator, output_format))
                count += 1
                uncommitted[TopicPartition(record.topic, record.partition)] = record.offset + 1
            sys.stdout.flush()
            if group is not None and uncommitted:
                _commit_printed(consumer, uncommitted)
            if timeout_ms is not None and idle_ms >= timeout_ms:
                break
    except RaftlogError as exc:
        fail(f"{exc.reason}: {exc.message}")
    except KeyboardInterrupt:
        pass
    finally:
        if group is not None and uncommitted:
            _commit_printed(consumer, uncommitted)
        consumer.close()
    click.echo(f"Processed a total of {count} messages", err=True)


def _commit_printed(consumer, uncommitted: dict) -> None:
    """Commits what was printed; what fails stays for the next try, unless the partition has
    gone to another member (whose committed offset then rules)."""
    from raftlog.errors import RaftlogError

    owned = consumer.assignment()
    for tp in [tp for tp in uncommitted if tp not in owned]:
        del uncommitted[tp]
    if not uncommitted:
        return
    try:
        consumer.commit(dict(uncommitted))
        uncommitted.clear()
    except RaftlogError as exc:
        click.echo(f"Warning: commit failed: {exc.reason}: {exc.message}", err=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _partitions_of(bootstrap_server: str, topic: str) -> list[int]:
    from raftlog.client.admin import Admin

    with Admin(reachable_bootstrap(bootstrap_server), **client_security()) as admin:
        [described] = admin.describe_topics([topic])
    return [p["partition"] for p in described["partitions"]]


commands = [produce, consume]
