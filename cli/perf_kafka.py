"""`raftlog perf kafka`: the Kafka listener against the gRPC path (issue 14's benchmark)."""

from __future__ import annotations

import asyncio

import click

from cli.output import bootstrap_option, client_security, emit, fail, format_table, output_option, parse_bootstrap

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19891,127.0.0.1:19892,127.0.0.1:19893"  # make run's Kafka listeners


def _text(s: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in s["producer_settings"].items())
    produce = format_table(
        ["PRODUCE", "RECORDS/S", "P50-MS", "P99-MS", "MAX-MS", "ERRORS"],
        [[p["path"], p["records_per_sec"], p["p50_ms"], p["p99_ms"], p["max_ms"], p["errors"]] for p in s["produce"]],
    )
    consume = format_table(
        ["CONSUME", "RECORDS/S", "ERRORS"], [[c["path"], c["records_per_sec"], c["errors"]] for c in s["consume"]]
    )
    return (
        f"topic {s['topic']}: {s['records']} records of {s['record_size']} bytes per path, after "
        f"{s['warmup_records']} warm-up records each, "
        f"{'as fast as possible' if s['throughput'] <= 0 else str(s['throughput']) + ' records/s'}; "
        f"producers: {settings}\n{produce}\n{consume}\n"
        f"this host's load average {s['load_average_1m']['before']:.2f} before, {s['load_average_1m']['after']:.2f} after"
    )


def _kafka_properties(path: str | None) -> dict[str, str]:
    """A librdkafka properties file (what `cluster up --secure` writes as kafka-client.properties)."""
    if path is None:
        return {}
    settings = {}
    try:
        lines = open(path).read().splitlines()
    except OSError as exc:
        fail(f"--kafka-config {path}: {exc.strerror or exc}")
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            fail(f"{path}:{number}: expected key=value, got {line!r}")
        settings[key.strip()] = value.strip()
    return settings


@click.command(name="kafka")
@click.option("--topic", default="perf-kafka", show_default=True, help="Created with 1 partition, RF 3 if missing.")
@click.option("--num-records", type=int, default=200_000, show_default=True, help="Per path.")
@click.option("--record-size", type=int, default=100, show_default=True)
@click.option("--warmup-records", type=int, default=None, help="Per path, not counted (default: 10% of --num-records).")
@click.option("--acks", type=click.Choice(["all", "1"]), default="all", show_default=True)
@click.option(
    "--throughput",
    type=int,
    default=-1,
    show_default=True,
    help="Records/s each producer aims for (latency at a fixed rate); -1 is as fast as possible.",
)
@click.option(
    "--kafka-bootstrap-server",
    default=DEFAULT_KAFKA_BOOTSTRAP,
    show_default=True,
    help="The cluster's Kafka listeners (host:port,...).",
)
@click.option(
    "--kafka-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="librdkafka settings (key=value lines) for the Kafka clients, e.g. a secure cluster's kafka-client.properties.",
)
@bootstrap_option
@output_option
def command(
    topic,
    num_records,
    record_size,
    warmup_records,
    acks,
    throughput,
    kafka_bootstrap_server,
    kafka_config,
    bootstrap_server,
    output_format,
) -> None:
    """confluent-kafka's producer against the Kafka listener versus raftlog's gRPC producer (records/s,
    p50/p99 latency), and a librdkafka consumer versus `perf consume`, on one topic in one run."""
    from raftlog.client.admin import Admin
    from raftlog.errors import RaftlogError
    from raftlog.perf.kafka_bench import run_kafka_comparison

    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        fail("perf kafka needs confluent-kafka (a development dependency: pip install confluent-kafka)")
    if num_records < 1 or record_size < 0 or (warmup_records is not None and warmup_records < 0):
        fail("--num-records must be >= 1, --record-size and --warmup-records >= 0")
    if warmup_records is None:
        warmup_records = min(num_records // 10, 50_000)
    servers = parse_bootstrap(bootstrap_server)
    parse_bootstrap(kafka_bootstrap_server)
    security = client_security()
    try:
        with Admin(servers, **security) as admin:
            if topic not in admin.list_topics():
                admin.create_topic(topic, partitions=1, replication_factor=3)
            [described] = admin.describe_topics([topic])
            if len(described["partitions"]) != 1:
                fail(f"topic {topic} has {len(described['partitions'])} partitions; the benchmark uses one")
        figures = asyncio.run(
            run_kafka_comparison(
                ",".join(servers),
                kafka_bootstrap_server,
                topic,
                num_records,
                record_size,
                {"acks": acks if acks == "all" else int(acks)},
                warmup_records,
                security,
                _kafka_properties(kafka_config),
                throughput,
            )
        )
    except (RaftlogError, ValueError) as exc:
        fail(f"{exc.reason}: {exc.message}" if isinstance(exc, RaftlogError) else str(exc))
    emit(output_format, figures, _text)
