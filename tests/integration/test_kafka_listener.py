"""Kafka clients that no one here wrote, against raftlog's Kafka listener: kcat (Debian's package)
and confluent-kafka (librdkafka); the records they write are read back through raftlog's own gRPC
client too (one log, two protocols). Raw-socket checks cover what a client library would hide:
ApiVersions advertising what is served, UNSUPPORTED_VERSION, pipelining, malformed frames.

One three-node process cluster serves the whole module (each test uses its own topics).
"""

from __future__ import annotations

import io
import shutil
import socket
import struct
import subprocess
import time
from collections import defaultdict

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v2.header import RequestHeader
from kio.serial import entity_reader, entity_writer

from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.cluster.local import LocalCluster
from raftlog.kafka.handlers import API_VERSIONS
from tests.integration.conftest import running_kafka_cluster, wait_until

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_kafka_cluster(tmp_path_factory.mktemp("kafka-cluster")) as cluster:
        yield cluster


def create_topic(cluster: LocalCluster, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap_servers})
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3)]).values():
        future.result(timeout=30)
    # Every broker's image has the topic's leaders before a client routes to them.
    wait_until(
        lambda: all(p.leader >= 0 for p in admin.list_topics(name, timeout=5).topics[name].partitions.values()),
        30,
        f"leaders for {name}",
    )


def read_through_grpc(cluster: LocalCluster, topic: str, partitions: int, expected: int) -> dict:
    """partition -> [(offset, key, value)], read from the beginning with raftlog's gRPC client."""
    seen: dict[int, list] = {p: [] for p in range(partitions)}
    consumer = Consumer(cluster.bootstrap_servers, auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + 30
        while sum(len(v) for v in seen.values()) < expected and time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500):
                seen[record.partition].append((record.offset, record.key, record.value))
    finally:
        consumer.close()
    return seen


# -- kcat --------------------------------------------------------------------------------------


def kcat(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kcat {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return done.stdout


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (make test installs it)")
def test_kcat_lists_metadata_produces_keyed_messages_from_a_file_and_consumes_them(cluster, tmp_path):
    bootstrap = cluster.kafka_bootstrap_servers.split(",")[0]
    create_topic(cluster, "kcat-keyed", 3)

    listing = kcat("-b", bootstrap, "-L", "-t", "kcat-keyed")
    for spec in cluster.specs.values():
        assert f"broker {spec.node_id} at 127.0.0.1:{spec.kafka_port}" in listing, listing
    assert 'topic "kcat-keyed" with 3 partitions' in listing, listing

    messages = [(f"key-{i % 7}", f"value-{i}") for i in range(60)]
    source = tmp_path / "messages.txt"
    source.write_text("".join(f"{key}:{value}\n" for key, value in messages))
    kcat("-b", bootstrap, "-P", "-t", "kcat-keyed", "-K:", "-l", str(source))

    out = kcat("-b", bootstrap, "-C", "-t", "kcat-keyed", "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\\n")
    read = [line.split(" ") for line in out.splitlines()]
    assert sorted((k, v) for _, _, k, v in read) == sorted(messages)
    # One key, one partition, and the file's order within it.
    partition_of = defaultdict(set)
    for p, _, key, _ in read:
        partition_of[key].add(p)
    assert all(len(ps) == 1 for ps in partition_of.values()), partition_of
    by_partition = defaultdict(list)
    for p, offset, key, value in read:
        by_partition[int(p)].append((int(offset), key, value))
    for records in by_partition.values():
        values = [v for _, _, v in sorted(records)]
        assert values == [v for _, v in messages if v in values]

    # The same log through raftlog's gRPC client: same offsets, keys and values.
    seen = read_through_grpc(cluster, "kcat-keyed", 3, len(messages))
    for p, records in by_partition.items():
        assert [(o, k.encode(), v.encode()) for o, k, v in sorted(records)] == seen[p]


# -- confluent-kafka (librdkafka) ---------------------------------------------------------------


def test_confluent_kafka_idempotent_acks_all_producer_consumer_and_admin(cluster):
    bootstrap = cluster.kafka_bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topic(cluster, "rdkafka-idem", 3)
    described = admin.describe_configs([ConfigResource("topic", "rdkafka-idem")])
    configs = next(iter(described.values())).result(timeout=30)
    assert configs["cleanup.policy"].value == "delete"
    assert "min.insync.replicas" in configs
    topic = admin.list_topics("rdkafka-idem", timeout=10).topics["rdkafka-idem"]
    assert sorted(topic.partitions) == [0, 1, 2]
    assert all(sorted(p.replicas) == [1, 2, 3] for p in topic.partitions.values())
    # Creating it again is Kafka's TOPIC_ALREADY_EXISTS.
    again = next(iter(admin.create_topics([NewTopic("rdkafka-idem", 3, 3)]).values()))
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        again.result(timeout=30)
    assert raised.value.args[0].code() == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS

    count = 3000
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    delivered: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    errors = []

    def on_delivery(err, message):
        if err is not None:
            errors.append(err)
        else:
            delivered[message.partition()].append((message.offset(), message.value()))

    for i in range(count):
        producer.produce("rdkafka-idem", key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=on_delivery)
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    assert sum(len(v) for v in delivered.values()) == count

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused-manual-assignment", "enable.auto.commit": False}
    )
    consumed: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    try:
        consumer.assign([confluent_kafka.TopicPartition("rdkafka-idem", p, 0) for p in range(3)])
        deadline = time.monotonic() + 60
        while sum(len(v) for v in consumed.values()) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                assert message.error() is None, message.error()
                consumed[message.partition()].append((message.offset(), message.value()))
    finally:
        consumer.close()
    # Exactly what was acknowledged, at the acknowledged offsets: nothing lost or written twice.
    assert {p: sorted(v) for p, v in consumed.items()} == {p: sorted(v) for p, v in delivered.items()}
    grpc_seen = read_through_grpc(cluster, "rdkafka-idem", 3, count)
    assert {p: [(o, v) for o, _, v in records] for p, records in grpc_seen.items()} == {
        p: sorted(v) for p, v in delivered.items()
    }

    low, high = consumer_watermarks(bootstrap, "rdkafka-idem", 0)
    assert (low, high) == (0, len(delivered[0]))
    deleted = next(iter(admin.delete_topics(["rdkafka-idem"]).values()))
    deleted.result(timeout=30)
    wait_until(lambda: "rdkafka-idem" not in admin.list_topics(timeout=5).topics, 30, "topic deleted")


def consumer_watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """ListOffsets earliest and latest, as librdkafka asks for them."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


def test_confluent_kafka_acks_0_and_1_and_offsets_for_times(cluster):
    bootstrap = cluster.kafka_bootstrap_servers
    create_topic(cluster, "rdkafka-acks", 1)
    # acks=1 first: it is retried until the new topic's leader takes it; acks=0 is fire and forget
    # (a record sent before the leader knows it leads would be dropped, as in Kafka).
    for acks, first_timestamp in ((1, 1_000_000), (0, 1_001_000)):
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": acks})
        for i in range(50):
            producer.produce("rdkafka-acks", value=f"acks{acks}-{i}".encode(), timestamp=first_timestamp + i)
        assert producer.flush(30) == 0
    wait_until(lambda: consumer_watermarks(bootstrap, "rdkafka-acks", 0)[1] == 100, 30, "100 records")
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "times"})
    try:
        # The first record of the acks=0 run by its timestamp: ListOffsets by time.
        found = consumer.offsets_for_times([confluent_kafka.TopicPartition("rdkafka-acks", 0, 1_001_000)], timeout=10)
        assert found[0].offset == 50
        after_all = consumer.offsets_for_times([confluent_kafka.TopicPartition("rdkafka-acks", 0, 9_000_000)], 10)
        assert after_all[0].offset == -1  # no record that late: Kafka's "end" answer
    finally:
        consumer.close()


# -- the protocol itself, over a raw socket --------------------------------------------------------


def request_frame(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    buffer = io.BytesIO()
    header = RequestHeader(
        request_api_key=api_key, request_api_version=version, correlation_id=correlation_id, client_id="raw"
    )
    entity_writer(RequestHeader)(buffer, header)
    payload = buffer.getvalue() + body
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


def api_versions_body(version: int) -> bytes:
    from kio.index import load_request_schema

    schema = load_request_schema(18, version)
    buffer = io.BytesIO()
    values = {"client_software_name": "raw", "client_software_version": "1"} if version >= 3 else {}
    entity_writer(schema)(buffer, schema(**values))
    return buffer.getvalue()


def decode_api_versions(frame: bytes, version: int):
    from kio.index import load_response_schema

    schema = load_response_schema(18, version)
    (correlation_id,) = struct.unpack_from(">i", frame)
    body, _ = entity_reader(schema)(frame, 4)  # ApiVersions answers with response header v0 always
    return correlation_id, body


def test_api_versions_advertise_what_is_served_and_pipelined_requests_are_answered_in_order(cluster):
    port = cluster.specs[1].kafka_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Three requests in one write: three answers, in order.
        sock.sendall(b"".join(request_frame(18, 3, cid, api_versions_body(3)) for cid in (7, 8, 9)))
        answers = [decode_api_versions(read_frame(sock), 3) for _ in range(3)]
        assert [cid for cid, _ in answers] == [7, 8, 9]
        body = answers[0][1]
        assert body.error_code == ErrorCode.none
        assert {k.api_key: (k.min_version, k.max_version) for k in body.api_keys} == API_VERSIONS

        # A newer ApiVersions than served: a v0 answer with UNSUPPORTED_VERSION and the versions.
        sock.sendall(request_frame(18, 9, 10, b""))
        cid, body = decode_api_versions(read_frame(sock), 0)
        assert (cid, body.error_code) == (10, ErrorCode.unsupported_version)
        assert {k.api_key for k in body.api_keys} == set(API_VERSIONS)

        # An API that is not served (DescribeAcls v1): UNSUPPORTED_VERSION, and the connection goes on.
        from kio.index import load_response_schema

        sock.sendall(request_frame(29, 1, 11, b""))
        frame = read_frame(sock)
        assert struct.unpack_from(">i", frame)[0] == 11
        acls, _ = entity_reader(load_response_schema(29, 1))(frame, 4)
        assert acls.error_code == ErrorCode.unsupported_version
        sock.sendall(request_frame(18, 3, 12, api_versions_body(3)))
        assert decode_api_versions(read_frame(sock), 3)[0] == 12


def test_a_malformed_frame_closes_that_connection_only(cluster):
    port = cluster.specs[2].kafka_port
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as bad,
        socket.create_connection(("127.0.0.1", port), timeout=10) as good,
        socket.create_connection(("127.0.0.1", port), timeout=10) as huge,
    ):
        # Metadata v12 whose body ends inside its topics array.
        bad.sendall(request_frame(3, 12, 1, b"\x05\x00"))
        assert bad.recv(1) == b"", "the connection of a malformed request is closed"
        # A size prefix beyond the frame limit is refused before anything is read.
        huge.sendall(struct.pack(">i", 1 << 30))
        assert huge.recv(1) == b""
        good.sendall(request_frame(18, 3, 5, api_versions_body(3)))
        assert decode_api_versions(read_frame(good), 3)[0] == 5


def test_confluent_kafka_commits_offsets_of_assigned_partitions_and_resumes_from_them(cluster):
    """OffsetCommit/OffsetFetch for a consumer outside the group protocol (assign + commit), on
    the same coordinator and offsets topic as gRPC groups: raftlog's Admin sees the commits."""
    bootstrap = cluster.kafka_bootstrap_servers
    create_topic(cluster, "rdkafka-commits", 2)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(40):
        producer.produce("rdkafka-commits", value=f"c{i}".encode(), partition=i % 2)
    assert producer.flush(30) == 0

    settings = {"bootstrap.servers": bootstrap, "group.id": "rdkafka-committer", "enable.auto.commit": False}
    first = confluent_kafka.Consumer({**settings, "auto.offset.reset": "earliest"})
    try:
        first.assign([confluent_kafka.TopicPartition("rdkafka-commits", p) for p in (0, 1)])
        read = 0
        deadline = time.monotonic() + 30
        while read < 40 and time.monotonic() < deadline:
            read += len([m for m in first.consume(100, 1.0) if m.error() is None])
        assert read == 40, f"read {read} of 40"
        done = first.commit(
            offsets=[
                confluent_kafka.TopicPartition("rdkafka-commits", 0, 15),
                confluent_kafka.TopicPartition("rdkafka-commits", 1, 7),
            ],
            asynchronous=False,
        )
        assert [(tp.partition, tp.offset, tp.error) for tp in done] == [(0, 15, None), (1, 7, None)]
    finally:
        first.close()

    with cluster.admin() as admin:
        committed = admin.list_group_offsets("rdkafka-committer")
    assert committed == {
        ("rdkafka-commits", 0): 15,
        ("rdkafka-commits", 1): 7,
    }

    again = confluent_kafka.Consumer({**settings, "auto.offset.reset": "latest"})
    try:
        fetched = again.committed([confluent_kafka.TopicPartition("rdkafka-commits", p) for p in (0, 1)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in fetched] == [(0, 15), (1, 7)]
        # Assigned without an offset, it starts from the committed one (not "latest").
        again.assign([confluent_kafka.TopicPartition("rdkafka-commits", p) for p in (0, 1)])
        firsts: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(firsts) < 2 and time.monotonic() < deadline:
            for message in again.consume(100, 1.0):
                if message.error() is None:
                    firsts.setdefault(message.partition(), message.offset())
        assert firsts == {0: 15, 1: 7}
    finally:
        again.close()
