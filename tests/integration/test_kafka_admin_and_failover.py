"""Kafka clients against raftlog's Kafka listener, second part: AdminClient's partition and config
changes (CreatePartitions, AlterConfigs, IncrementalAlterConfigs, per-resource error codes),
Fetch's long poll and OffsetForLeaderEpoch over a raw socket, and the failover of issue 14: kill -9
of the partition leader while librdkafka produces idempotently with acks=all loses no acknowledged
record and writes none twice.

One three-node process cluster serves the module; the failover test runs last and restarts the
node it killed.
"""

from __future__ import annotations

import datetime
import io
import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from raftlog.cluster.local import LocalCluster
from raftlog.log.record_batch import encode_batch
from tests.integration.conftest import running_kafka_cluster, wait_until
from tests.integration.test_kafka_listener import api_versions_body, create_topic, read_frame, request_frame

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # User:ANONYMOUS (every PLAINTEXT Kafka client) a super user: it may administer SCRAM
    # credentials over the Kafka listener, which is not internal (nothing else differs without ACLs).
    with running_kafka_cluster(tmp_path_factory.mktemp("kafka-admin"), {"super.users": "User:ANONYMOUS"}) as cluster:
        yield cluster


def failure(future) -> confluent_kafka.KafkaError | None:
    try:
        future.result(timeout=30)
    except confluent_kafka.KafkaException as exc:
        return exc.args[0]
    return None


def topic_configs(admin: AdminClient, topic: str) -> dict:
    return next(iter(admin.describe_configs([ConfigResource("topic", topic)]).values())).result(timeout=30)


def test_admin_client_creates_partitions_and_alters_configs_with_an_error_code_per_resource(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap_servers})
    create_topic(cluster, "adm-grow", 1)

    # validate_only changes nothing; then the topic grows; shrinking or an unknown topic fails alone.
    assert failure(admin.create_partitions([NewPartitions("adm-grow", 3)], validate_only=True)["adm-grow"]) is None
    assert len(admin.list_topics("adm-grow", timeout=10).topics["adm-grow"].partitions) == 1
    assert failure(admin.create_partitions([NewPartitions("adm-grow", 3)])["adm-grow"]) is None
    wait_until(
        lambda: len(admin.list_topics("adm-grow", timeout=5).topics["adm-grow"].partitions) == 3, 30, "3 partitions"
    )
    answers = admin.create_partitions([NewPartitions("adm-grow", 2), NewPartitions("adm-missing", 4)])
    assert failure(answers["adm-grow"]).code() == confluent_kafka.KafkaError.INVALID_PARTITIONS
    assert failure(answers["adm-missing"]).code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART

    # IncrementalAlterConfigs: SET, a validate_only SET that changes nothing, and bad values refused
    # per resource while a good resource in the same request is applied.
    def incremental(topic: str, name: str, value: str | None, op=AlterConfigOpType.SET, validate_only=False):
        entry = ConfigEntry(name, value, incremental_operation=op)
        resource = ConfigResource("topic", topic, incremental_configs=[entry])
        return admin.incremental_alter_configs([resource], validate_only=validate_only)[resource]

    assert failure(incremental("adm-grow", "retention.ms", "123456")) is None
    assert failure(incremental("adm-grow", "retention.ms", "999", validate_only=True)) is None
    configs = topic_configs(admin, "adm-grow")
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].source == confluent_kafka.admin.ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert failure(incremental("adm-grow", "retention.ms", "soon")).code() == confluent_kafka.KafkaError.INVALID_CONFIG
    assert failure(incremental("adm-grow", "no.such.config", "1")).code() == confluent_kafka.KafkaError.INVALID_CONFIG
    appended = failure(incremental("adm-grow", "cleanup.policy", "compact", op=AlterConfigOpType.APPEND))
    assert appended.code() == confluent_kafka.KafkaError.INVALID_CONFIG
    assert (
        failure(incremental("adm-missing", "retention.ms", "1")).code()
        == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    )
    # A broker resource: one broker's own dynamic config.
    broker_entry = ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
    broker = ConfigResource("broker", "2", incremental_configs=[broker_entry])
    assert failure(admin.incremental_alter_configs([broker])[broker]) is None
    described = next(iter(admin.describe_configs([ConfigResource("broker", "2")]).values())).result(timeout=30)
    assert described["log.retention.ms"].value == "7200000"

    # AlterConfigs (legacy) replaces the topic's dynamic configs: retention.ms, not given, goes back
    # to its default.
    legacy = ConfigResource("topic", "adm-grow", set_config={"segment.ms": "600000"})
    with pytest.warns(DeprecationWarning):
        answer = admin.alter_configs([legacy])[legacy]
    assert failure(answer) is None
    configs = topic_configs(admin, "adm-grow")
    assert configs["segment.ms"].value == "600000"
    assert configs["retention.ms"].source != confluent_kafka.admin.ConfigSource.DYNAMIC_TOPIC_CONFIG.value


# -- Fetch's long poll and OffsetForLeaderEpoch, over a raw socket -----------------------------------


def request_types(api_key: int, version: int):
    return sys.modules[load_request_schema(api_key, version).__module__]


def call(sock: socket.socket, api_key: int, version: int, correlation_id: int, **body):
    schema = load_request_schema(api_key, version)
    buffer = io.BytesIO()
    entity_writer(schema)(buffer, schema(**body))
    sock.sendall(request_frame(api_key, version, correlation_id, buffer.getvalue()))
    frame = read_frame(sock)
    response = load_response_schema(api_key, version)
    header, size = entity_reader(response.__header_schema__)(frame, 0)
    assert header.correlation_id == correlation_id
    return entity_reader(response)(frame, size)[0]


def leader_of(cluster: LocalCluster, topic: str, partition: int = 0) -> int:
    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap_servers})
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[partition].leader


def fetch(sock, topic: str, offset: int, max_wait_ms: int, min_bytes: int, max_bytes: int, correlation_id: int):
    module = request_types(1, 12)
    request = dict(
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(
            module.FetchTopic(
                topic=topic,
                partitions=(
                    module.FetchPartition(
                        partition=0, fetch_offset=offset, log_start_offset=-1, partition_max_bytes=max_bytes
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )
    answer = call(sock, 1, 12, correlation_id, **request)
    [partition] = answer.responses[0].partitions
    return partition


def test_fetch_long_polls_until_min_bytes_arrive_and_max_bytes_still_returns_a_whole_batch(cluster):
    create_topic(cluster, "long-poll", 1)
    leader = leader_of(cluster, "long-poll")
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap_servers, "acks": "all"})
    with socket.create_connection(("127.0.0.1", cluster.specs[leader].kafka_port), timeout=60) as sock:
        # A fetch at the log end waits (max wait 30 s) and is answered with the record produced
        # while it waits: a fetch answered at once would carry nothing.
        waiting: dict = {}
        fetcher = threading.Thread(
            target=lambda: waiting.update(answer=fetch(sock, "long-poll", 0, 30_000, 1, 1 << 20, 1))
        )
        fetcher.start()
        time.sleep(0.5)
        producer.produce("long-poll", value=b"x" * 1000)
        assert producer.flush(30) == 0
        fetcher.join(45)
        assert not fetcher.is_alive()
        assert waiting["answer"].error_code == ErrorCode.none
        assert len(waiting["answer"].records) > 1000

        # min_bytes larger than what is there: answered after max_wait with what there is.
        partial = fetch(sock, "long-poll", 0, 200, 1 << 20, 1 << 20, 2)
        assert partial.error_code == ErrorCode.none and len(partial.records) > 1000
        # max_bytes smaller than the first batch: that batch anyway, so the consumer progresses (KIP-74).
        for _ in range(5):  # one batch each
            producer.produce("long-poll", value=b"y" * 1000)
            producer.flush(30)
        small = fetch(sock, "long-poll", 0, 0, 1, 10, 3)
        assert 1000 < len(small.records) < 2000, len(small.records)
        # An offset past the log end: OFFSET_OUT_OF_RANGE, not a wait.
        beyond = fetch(sock, "long-poll", 10_000, 30_000, 1, 1 << 20, 4)
        assert beyond.error_code == ErrorCode.offset_out_of_range


def produce_frame(topic: str, values: list[bytes], correlation_id: int) -> bytes:
    module = request_types(0, 9)
    batch = encode_batch([(None, value, None, 1_000) for value in values])
    body = module.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=30),
        topic_data=(
            module.TopicProduceData(name=topic, partition_data=(module.PartitionProduceData(index=0, records=batch),)),
        ),
    )
    buffer = io.BytesIO()
    entity_writer(type(body))(buffer, body)
    return request_frame(0, 9, correlation_id, buffer.getvalue())


def test_pipelined_produce_requests_are_stored_and_answered_in_the_order_they_were_sent(cluster):
    create_topic(cluster, "pipelined", 1)
    leader = leader_of(cluster, "pipelined")
    sends = [[b"r%d-%d" % (r, i) for i in range(10)] for r in range(8)]
    frames = [produce_frame("pipelined", values, r) for r, values in enumerate(sends)]
    # An ApiVersions in the middle: it waits for the Produce requests before it, and those after
    # it wait for it.
    frames.insert(5, request_frame(18, 3, 100, api_versions_body(3)))
    with socket.create_connection(("127.0.0.1", cluster.specs[leader].kafka_port), timeout=60) as sock:
        sock.sendall(b"".join(frames))  # all of them before any answer
        answers = [read_frame(sock) for _ in frames]
    correlation_ids = [int.from_bytes(frame[:4], "big", signed=True) for frame in answers]
    assert correlation_ids == [0, 1, 2, 3, 4, 100, 5, 6, 7]
    response = load_response_schema(0, 9)
    offsets = []
    for frame in answers[:5] + answers[6:]:
        _, size = entity_reader(response.__header_schema__)(frame, 0)
        [partition] = entity_reader(response)(frame, size)[0].responses[0].partition_responses
        assert partition.error_code == ErrorCode.none
        offsets.append(partition.base_offset)
    assert offsets == [10 * r for r in range(8)]
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": cluster.kafka_bootstrap_servers, "group.id": "pipelined", "enable.auto.commit": False}
    )
    values: list[bytes] = []
    try:
        consumer.assign([confluent_kafka.TopicPartition("pipelined", 0, confluent_kafka.OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while len(values) < 80 and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(100, 1.0) if m.error() is None]
    finally:
        consumer.close()
    assert values == [value for send in sends for value in send]


def offset_for_leader_epoch(sock, topic: str, current_leader_epoch: int, leader_epoch: int, correlation_id: int):
    module = request_types(23, 4)
    topics = (
        module.OffsetForLeaderTopic(
            topic=topic,
            partitions=(
                module.OffsetForLeaderPartition(
                    partition=0, current_leader_epoch=current_leader_epoch, leader_epoch=leader_epoch
                ),
            ),
        ),
    )
    answer = call(sock, 23, 4, correlation_id, replica_id=-1, topics=topics)
    return answer.topics[0].partitions[0]


def test_perf_kafka_reports_both_paths_for_the_same_records(cluster):
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "perf", "kafka", "--num-records", "300", "--warmup-records", "50"]
        + ["--bootstrap-server", cluster.bootstrap_servers, "--kafka-bootstrap-server", cluster.kafka_bootstrap_servers]
        + ["--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert [p["path"].split(",")[0] for p in figures["produce"]] == ["gRPC", "Kafka listener", "Kafka listener"]
    assert all(p["records"] == 300 and p["errors"] == 0 and p["records_per_sec"] > 0 for p in figures["produce"])
    assert all(c["records"] == 300 and c["errors"] == 0 for c in figures["consume"]), figures["consume"]
    assert "before" in figures["load_average_1m"]


# -- failover (issue 14, item 4) --------------------------------------------------------------------


def test_idempotent_acks_all_producer_survives_kill_9_of_the_leader_without_loss_or_duplicates(cluster):
    topic = "failover"
    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap_servers})
    future = admin.create_topics([confluent_kafka.admin.NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[
        topic
    ]
    future.result(timeout=30)
    wait_until(lambda: leader_of(cluster, topic) >= 0, 30, "a leader")
    old_leader = leader_of(cluster, topic)
    bootstrap = ",".join(
        f"127.0.0.1:{spec.kafka_port}" for spec in cluster.specs.values() if spec.node_id != old_leader
    )

    total, kill_at = 4000, 1500
    # A consumer reads the partition while the leader dies: librdkafka validates its position on
    # the new leader (OffsetForLeaderEpoch) and goes on from it, neither reset nor re-reading.
    live: list[bytes] = []
    live_errors: list = []
    reading = threading.Event()
    reading.set()

    def read_live() -> None:
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "failover-live",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        try:
            consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
            deadline = time.monotonic() + 180
            while (reading.is_set() or len(live) < total) and time.monotonic() < deadline:
                for message in consumer.consume(500, 0.5):
                    (live.append(message.value()) if message.error() is None else live_errors.append(message.error()))
        finally:
            consumer.close()

    live_reader = threading.Thread(target=read_live)
    live_reader.start()
    acknowledged: dict[bytes, int] = {}
    errors: list = []

    def delivered(err, message):
        if err is None:
            acknowledged[message.value()] = message.offset()
        else:
            errors.append(err)

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120_000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    # The leader is killed once 1500 records are sent and the first ones acknowledged (so the
    # producer has its id and the leader's address), with batches in flight to it; 2500 more are
    # sent across the failover at about 2000 records/s.
    killed = False
    for i in range(total):
        if i == kill_at:
            while not acknowledged:
                producer.poll(0.1)
            cluster.kill_node(old_leader)
            killed = True
        while True:
            try:
                producer.produce(topic, value=b"%06d" % i, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if i % 20 == 19:
            time.sleep(0.01)
    assert killed, "the leader was not killed during the stream"
    assert producer.flush(150) == 0, "records still unacknowledged"
    reading.clear()
    live_reader.join(200)
    assert not live_reader.is_alive()
    assert not errors, errors[:5]
    new_leader = leader_of(cluster, topic)
    assert new_leader not in (old_leader, -1)

    # Read the partition back from the beginning: every acknowledged record once, at its offset.
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "failover-checker",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    seen: dict[bytes, list[int]] = {}
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        deadline = time.monotonic() + 60
        while len(seen) < total and time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                if message.error() is None:
                    seen.setdefault(message.value(), []).append(message.offset())
    finally:
        consumer.close()
    lost = [value for value in acknowledged if value not in seen]
    duplicated = {value: offsets for value, offsets in seen.items() if len(offsets) > 1}
    assert len(acknowledged) == total
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    assert not duplicated, f"{len(duplicated)} records stored twice, e.g. {list(duplicated.items())[:5]}"
    assert all(seen[value] == [offset] for value, offset in acknowledged.items())
    assert not live_errors, live_errors[:5]
    assert live == [b"%06d" % i for i in range(total)], "the live consumer lost its place across the failover"

    # OffsetForLeaderEpoch on the new leader: the old epoch ends where the new leader took over
    # (at most the log end), the current one at the log end; an old current epoch is fenced.
    with socket.create_connection(("127.0.0.1", cluster.specs[new_leader].kafka_port), timeout=30) as sock:
        latest = offset_for_leader_epoch(sock, topic, -1, 1 << 30, 1)
        assert latest.error_code == ErrorCode.none and latest.end_offset == total
        first = offset_for_leader_epoch(sock, topic, -1, 0, 2)
        assert first.error_code == ErrorCode.none and first.leader_epoch <= latest.leader_epoch
        assert 0 <= first.end_offset <= total
        fenced = offset_for_leader_epoch(sock, topic, 0, 0, 3)
        assert latest.leader_epoch == 0 or fenced.error_code == ErrorCode.fenced_leader_epoch

    cluster.start_node(old_leader)
    cluster.wait_for_brokers(3, timeout_s=90)


def test_scram_credentials_altered_on_a_broker_that_is_not_the_controller(cluster):
    """AlterUserScramCredentials on a Kafka listener of a node that is not the active controller:
    forwarded there (as `raftlog users scram` is), answered per user, and a DescribeUserScramCredentials
    sent to that broker next sees the change; the gRPC Admin reads the same credential."""
    from kio.schema.alter_user_scram_credentials.v0.request import ScramCredentialDeletion, ScramCredentialUpsertion
    from kio.schema.describe_user_scram_credentials.v0.request import UserName

    from raftlog.scram import SCRAM_SHA_256, salted_password

    controller = cluster.wait_for_leader(timeout_s=30)
    spec = next(s for s in cluster.specs.values() if s.node_id != controller)
    salt = b"s" * 32
    upsertion = ScramCredentialUpsertion(
        name="forwarded-user",
        mechanism=1,
        iterations=4096,
        salt=salt,
        salted_password=salted_password(SCRAM_SHA_256, "pw", salt, 4096),
    )
    with socket.create_connection((spec.host, spec.kafka_port), timeout=30) as sock:
        altered = call(
            sock,
            51,
            0,
            1,
            upsertions=(upsertion,),
            deletions=(ScramCredentialDeletion(name="nobody", mechanism=2),),
        )
        assert {r.user: r.error_code for r in altered.results} == {
            "nobody": ErrorCode.resource_not_found,
            "forwarded-user": ErrorCode.none,
        }
        described = call(sock, 50, 0, 2, users=(UserName(name="forwarded-user"),))
        assert [(r.user, r.error_code) for r in described.results] == [("forwarded-user", ErrorCode.none)]
        assert [(i.mechanism, i.iterations) for i in described.results[0].credential_infos] == [(1, 4096)]
    with cluster.admin(timeout_ms=15000) as admin:
        assert admin.describe_user_scram_credentials(["forwarded-user"]) == {
            "forwarded-user": [{"mechanism": "SCRAM-SHA-256", "iterations": 4096}]
        }
