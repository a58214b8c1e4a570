"""Consumer groups of Kafka clients that no one here wrote, against raftlog's Kafka listener: kcat
(-G) and confluent-kafka (librdkafka) with the classic protocol (JoinGroup/SyncGroup/Heartbeat/
LeaveGroup) and with KIP-848 (ConsumerGroupHeartbeat), kafka-python and aiokafka committing and
resuming after a restart, and what `raftlog groups` shows of them.

One three-node process cluster serves the whole module (each test uses its own topics and groups).
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from raftlog.cluster.local import LocalCluster
from tests.integration.conftest import running_kafka_cluster, wait_until

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytestmark = pytest.mark.slow

SESSION_TIMEOUT_MS = 6000  # group.min.session.timeout.ms: a member gone without leaving is noticed soon


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Kafka's 3 s first-rebalance delay, shortened: the tests start their members together.
    extra_config = {"group.initial.rebalance.delay.ms": 500}
    with running_kafka_cluster(tmp_path_factory.mktemp("kafka-groups"), extra_config) as cluster:
        yield cluster


def create_topic(cluster: LocalCluster, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap_servers})
    deadline = time.monotonic() + 60
    while True:
        [future] = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3)]).values()
        try:
            future.result(timeout=30)
            break
        except confluent_kafka.KafkaException as exc:
            error = exc.args[0]
            if error.code() == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                break  # an earlier try's answer was lost
            # The controller moving (a loaded machine) is retried, as Kafka's admin client does.
            if error.code() != confluent_kafka.KafkaError.NOT_CONTROLLER or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    wait_until(
        lambda: all(p.leader >= 0 for p in admin.list_topics(name, timeout=5).topics[name].partitions.values()),
        30,
        f"leaders for {name}",
    )


def produce(cluster: LocalCluster, topic: str, values: list[str], partition: int | None = None) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka_bootstrap_servers, "acks": "all"})
    for value in values:
        if partition is None:
            producer.produce(topic, key=value.encode(), value=value.encode())
        else:
            producer.produce(topic, key=value.encode(), value=value.encode(), partition=partition)
    assert producer.flush(60) == 0


def raftlog_cli(cluster: LocalCluster, *args: str):
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--bootstrap-server", cluster.bootstrap_servers, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"raftlog {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


def listed_type(cluster: LocalCluster, group: str) -> str | None:
    return next((g["type"] for g in raftlog_cli(cluster, "groups", "list") if g["group"] == group), None)


def committed(cluster: LocalCluster, group: str) -> dict[tuple[str, int], int]:
    admin = cluster.admin()
    try:
        return admin.list_group_offsets(group)
    finally:
        admin.close()


# -- kcat ------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (make kafka-tools installs it)")
def test_kcat_consumes_as_a_group_and_commits(cluster):
    create_topic(cluster, "kcat-group-topic", 3)
    values = [f"v{i}" for i in range(45)]
    produce(cluster, "kcat-group-topic", values)
    bootstrap = cluster.kafka_bootstrap_servers.split(",")[0]
    done = subprocess.run(
        [
            "kcat",
            "-b",
            bootstrap,
            "-X",
            "auto.offset.reset=earliest",
            "-X",
            f"session.timeout.ms={SESSION_TIMEOUT_MS}",
            "-e",
            "-q",
            "-f",
            "%p %o %s\\n",
            "-G",
            "kcat-group",
            "kcat-group-topic",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    read = [line.split(" ") for line in done.stdout.splitlines()]
    assert sorted(v for _, _, v in read) == sorted(values)
    ends = defaultdict(int)
    for p, offset, _ in read:
        ends[int(p)] = max(ends[int(p)], int(offset) + 1)
    # librdkafka commits what it consumed when kcat closes; the group is classic (TYPE classic).
    assert committed(cluster, "kcat-group") == {("kcat-group-topic", p): end for p, end in ends.items()}
    assert listed_type(cluster, "kcat-group") == "classic"
    # Run again: nothing new, so nothing is read (it resumes from the commits).
    again = subprocess.run(
        ["kcat", "-b", bootstrap, "-e", "-q", "-f", "%s\\n", "-G", "kcat-group", "kcat-group-topic"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stdout == "", again.stderr


# -- confluent-kafka (librdkafka) ------------------------------------------------------------------


def rdkafka_consumer(cluster: LocalCluster, group: str, **extra):
    settings = {
        "bootstrap.servers": cluster.kafka_bootstrap_servers,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        **extra,
    }
    return confluent_kafka.Consumer(settings)


def test_confluent_kafka_consumers_share_a_topic_commit_and_raftlog_describes_their_lag(cluster):
    topic, group = "rdkafka-shared", "rdkafka-group"
    create_topic(cluster, topic, 6)
    consumers = [rdkafka_consumer(cluster, group, **{"client.id": f"rd-{i}"}) for i in range(3)]
    try:
        for c in consumers:
            c.subscribe([topic])

        def shared():
            for c in consumers:
                c.poll(0.2)
            owned = [{tp.partition for tp in c.assignment()} for c in consumers]
            return all(len(o) == 2 for o in owned) and set().union(*owned) == set(range(6))

        wait_until(shared, 90, "the six partitions shared by the three consumers")
        owned = {i: {tp.partition for tp in c.assignment()} for i, c in enumerate(consumers)}

        values = [f"m{i}" for i in range(300)]
        produce(cluster, topic, values)
        seen: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        deadline = time.monotonic() + 60
        while sum(len(v) for v in seen.values()) < len(values) and time.monotonic() < deadline:
            for i, c in enumerate(consumers):
                for m in c.consume(100, 0.2):
                    assert m.error() is None, m.error()
                    seen[i].append((m.partition(), m.offset(), m.value().decode()))
        # Each record once, read by the consumer that owns its partition.
        assert sorted(v for records in seen.values() for _, _, v in records) == sorted(values)
        for i, records in seen.items():
            assert {p for p, _, _ in records} <= owned[i]
        for c in consumers:
            c.commit(asynchronous=False)  # the positions: fenced by the generation, which is current

        ends = {}
        for records in seen.values():
            for p, offset, _ in records:
                ends[p] = max(ends.get(p, 0), offset + 1)
        assert committed(cluster, group) == {(topic, p): end for p, end in ends.items()}

        rows = raftlog_cli(cluster, "groups", "describe", "--group", group)
        assert {(r["partition"], r["lag"]) for r in rows} == {(p, 0) for p in range(6)}
        assert {r["client_id"] for r in rows} == {"rd-0", "rd-1", "rd-2"}
        members = raftlog_cli(cluster, "groups", "describe", "--group", group, "--members")
        assert sorted(m["client_id"] for m in members) == ["rd-0", "rd-1", "rd-2"]
        assert all(m["partitions"] == 2 for m in members)
        state = raftlog_cli(cluster, "groups", "describe", "--group", group, "--state")
        assert [(s["type"], s["state"], s["members"], s["assignor"]) for s in state] == [
            ("classic", "Stable", 3, "range")
        ]

        produce(cluster, topic, [f"late{i}" for i in range(12)], partition=0)
        rows = raftlog_cli(cluster, "groups", "describe", "--group", group)
        assert {r["partition"]: r["lag"] for r in rows}[0] == 12

        # One consumer leaves: the other two take its partitions (a rebalance with LeaveGroup).
        consumers.pop().close()

        def two_share():
            for c in consumers:
                c.poll(0.2)
            owned = [{tp.partition for tp in c.assignment()} for c in consumers]
            return all(len(o) == 3 for o in owned) and set().union(*owned) == set(range(6))

        wait_until(two_share, 60, "the six partitions shared by the two remaining consumers")
    finally:
        for c in consumers:
            c.close()
    # All left: the group is Empty, and its offsets stay.
    assert wait_until(lambda: listed_state(cluster, group) == "Empty", 30, "an empty group")
    assert committed(cluster, group)[(topic, 1)] == ends[1]


def listed_state(cluster: LocalCluster, group: str) -> str | None:
    return next((g["state"] for g in raftlog_cli(cluster, "groups", "list") if g["group"] == group), None)


def test_confluent_kafka_with_the_kip_848_protocol_consumes_and_commits(cluster):
    topic, group = "rdkafka-848", "rdkafka-848-group"
    create_topic(cluster, topic, 2)
    produce(cluster, topic, [f"n{i}" for i in range(40)])
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": cluster.kafka_bootstrap_servers,
            "group.id": group,
            "group.protocol": "consumer",  # ConsumerGroupHeartbeat (KIP-848)
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    seen = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(seen) < 40 and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                assert m.error() is None, m.error()
                seen.append(m.value().decode())
        assert sorted(seen) == sorted(f"n{i}" for i in range(40))
        consumer.commit(asynchronous=False)
        assert listed_type(cluster, group) == "consumer"
        assert sum(committed(cluster, group).values()) == 40
    finally:
        consumer.close()


# -- kafka-python and aiokafka ---------------------------------------------------------------------


def test_kafka_python_group_commits_and_resumes_after_a_restart(cluster):
    kafka = pytest.importorskip("kafka")
    topic, group = "kpy-topic", "kpy-group"
    create_topic(cluster, topic, 2)
    first = [f"a{i}" for i in range(30)]
    produce(cluster, topic, first)

    def consume(expected: int) -> list[str]:
        consumer = kafka.KafkaConsumer(
            topic,
            bootstrap_servers=cluster.kafka_bootstrap_servers.split(","),
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=500,
        )
        got: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while len(got) < expected and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    got += [r.value.decode() for r in records]
            consumer.commit()
            # Nothing beyond what was asked for arrives (the next run must start after it).
            got += [r.value.decode() for records in consumer.poll(timeout_ms=1000).values() for r in records]
        finally:
            consumer.close()
        return got

    assert sorted(consume(len(first))) == sorted(first)
    assert sum(committed(cluster, group).values()) == len(first)
    second = [f"b{i}" for i in range(20)]
    produce(cluster, topic, second)
    assert sorted(consume(len(second))) == sorted(second)  # resumed from the commits: none of `first`
    assert listed_type(cluster, group) == "classic"


def describe(cluster: LocalCluster, group: str) -> dict:
    admin = cluster.admin()
    try:
        return admin.describe_group(group)
    finally:
        admin.close()


def test_aiokafka_group_resumes_after_a_restart_and_survives_its_coordinator_being_killed(cluster):
    aiokafka = pytest.importorskip("aiokafka")
    topic, group = "aio-topic", "aio-group"
    create_topic(cluster, topic, 2)
    first = [f"x{i}" for i in range(30)]
    produce(cluster, topic, first)

    def new_consumer():
        return aiokafka.AIOKafkaConsumer(
            topic,
            bootstrap_servers=cluster.kafka_bootstrap_servers,
            group_id=group,
            client_id="aio",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=500,
        )

    async def take(consumer, expected: int) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            got += [r.value.decode() for records in batches.values() for r in records]
        await consumer.commit()
        return got

    async def first_run() -> list[str]:
        consumer = new_consumer()
        await consumer.start()
        try:
            return await take(consumer, len(first))
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(first_run())) == sorted(first)
    offsets = committed(cluster, group)
    assert sum(offsets.values()) == len(first)

    second = [f"y{i}" for i in range(20)]
    killed: list[int] = []

    async def second_run() -> tuple[list[str], dict, dict]:
        consumer = new_consumer()
        await consumer.start()
        try:
            # Resumed from the commits: nothing of `first` comes again.
            early = await take(consumer, 0)
            await asyncio.sleep(1.0)
            before = await asyncio.to_thread(describe, cluster, group)
            # The coordinator dies: another broker loads the group from __consumer_offsets.
            killed.append(before["coordinator"])
            await asyncio.to_thread(cluster.kill_node, before["coordinator"])

            def moved():
                d = describe(cluster, group)
                return d if d["coordinator"] != before["coordinator"] else None

            after = await asyncio.to_thread(wait_until, moved, 60, "a new coordinator for the group")
            await asyncio.to_thread(produce, cluster, topic, second)
            return early + await take(consumer, len(second)), before, after
        finally:
            await consumer.stop()

    try:
        got, before, after = asyncio.run(second_run())
    finally:
        for node_id in killed:
            cluster.start_node(node_id)
        cluster.wait_for_brokers(3, timeout_s=90)
    assert sorted(got) == sorted(second)
    # The classic group's metadata (GroupMetadataValue) came through the failover: its member,
    # with the partitions the leader client assigned, at the generation it had.
    assert before["type"] == after["type"] == "classic"
    assert [m["member_id"] for m in after["members"]] == [m["member_id"] for m in before["members"]]
    assert sorted(tuple(tp) for m in after["members"] for tp in m["assignment"]) == [(topic, 0), (topic, 1)]
    assert after["group_epoch"] >= before["group_epoch"]
    assert sum(committed(cluster, group).values()) == len(first) + len(second)


# -- one type per group id, over a raw socket -------------------------------------------------------


def kafka_call(port: int, api_key: int, version: int, body):
    """One request (a kio entity) to a broker's Kafka listener; its kio response."""
    from kio.index import load_response_schema
    from kio.serial import entity_reader, entity_writer

    header_schema = type(body).__header_schema__
    buffer = io.BytesIO()
    entity_writer(header_schema)(
        buffer,
        header_schema(request_api_key=api_key, request_api_version=version, correlation_id=5, client_id="raw"),
    )
    entity_writer(type(body))(buffer, body)
    payload = buffer.getvalue()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack_from(">i", data)[0]:
            chunk = sock.recv(65536)
            assert chunk, "the listener closed the connection"
            data += chunk
    schema = load_response_schema(api_key, version)
    _, header_size = entity_reader(schema.__header_schema__)(data, 4)
    answer, _ = entity_reader(schema)(data, 4 + header_size)
    return answer


def coordinator_port(cluster: LocalCluster, group: str) -> int:
    return cluster.specs[describe(cluster, group)["coordinator"]].kafka_port


def join_group_v5(group: str, member_id: str = ""):
    from kio.index import load_request_schema

    schema = load_request_schema(11, 5)
    protocol = sys.modules[schema.__module__].JoinGroupRequestProtocol
    return schema(
        group_id=group,
        session_timeout=datetime.timedelta(milliseconds=SESSION_TIMEOUT_MS),
        rebalance_timeout=datetime.timedelta(milliseconds=10_000),
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocols=(protocol(name="range", metadata=b""),),
    )


def test_a_group_id_is_of_one_type_at_a_time_and_a_new_member_needs_a_member_id(cluster):
    from kio.index import load_request_schema
    from kio.schema.errors import ErrorCode

    topic = "typed-topic"
    create_topic(cluster, topic, 1)
    classic = rdkafka_consumer(cluster, "typed-classic")
    kip848 = confluent_kafka.Consumer(
        {"bootstrap.servers": cluster.kafka_bootstrap_servers, "group.id": "typed-848", "group.protocol": "consumer"}
    )
    try:
        for c in (classic, kip848):
            c.subscribe([topic])

        def assigned():
            for c in (classic, kip848):
                c.poll(0.2)
            return all(c.assignment() for c in (classic, kip848))

        wait_until(assigned, 60, "both consumers assigned")
        # A KIP-848 member for the classic group with members: GROUP_ID_NOT_FOUND, as in Kafka 4.0.
        heartbeat = load_request_schema(68, 0)(
            group_id="typed-classic",
            member_id="raw-member",
            member_epoch=0,
            instance_id=None,
            rack_id=None,
            rebalance_timeout=datetime.timedelta(milliseconds=10_000),
            subscribed_topic_names=(topic,),
            server_assignor=None,
            topic_partitions=(),
        )
        answer = kafka_call(coordinator_port(cluster, "typed-classic"), 68, 0, heartbeat)
        assert answer.error_code == ErrorCode.group_id_not_found, answer
        # A classic member for the KIP-848 group with members: INCONSISTENT_GROUP_PROTOCOL.
        answer = kafka_call(coordinator_port(cluster, "typed-848"), 11, 5, join_group_v5("typed-848"))
        assert answer.error_code == ErrorCode.inconsistent_group_protocol, answer
        assert listed_type(cluster, "typed-classic") == "classic" and listed_type(cluster, "typed-848") == "consumer"
    finally:
        classic.close()
        kip848.close()
    # A first JoinGroup v4+ gets MEMBER_ID_REQUIRED and the member id to join with.
    port = coordinator_port(cluster, "typed-classic")
    answer = kafka_call(port, 11, 5, join_group_v5("typed-classic"))
    assert answer.error_code == ErrorCode.member_id_required and answer.member_id.startswith("raw-")


# -- administering groups through the Kafka protocol ------------------------------------------------


def test_kafka_admin_clients_list_describe_delete_offsets_of_and_delete_a_classic_group(cluster):
    kafka = pytest.importorskip("kafka")
    from kafka.admin import KafkaAdminClient

    group = "admin-group"
    create_topic(cluster, "adm-a", 1)
    create_topic(cluster, "adm-b", 1)
    produce(cluster, "adm-a", [f"a{i}" for i in range(5)])
    admin = KafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap_servers.split(","))
    consumer = rdkafka_consumer(cluster, group, **{"client.id": "adm-consumer"})
    try:
        # Offsets set from outside the group while it has no members (OffsetCommit, generation -1).
        admin.alter_group_offsets(group, {kafka.TopicPartition("adm-b", 0): kafka.OffsetAndMetadata(3, "", -1)})
        consumer.subscribe(["adm-a"])
        got = 0
        deadline = time.monotonic() + 60
        while got < 5 and time.monotonic() < deadline:
            got += len([m for m in consumer.consume(10, 0.5) if m.error() is None])
        consumer.commit(asynchronous=False)

        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["group_state"] == "Stable" and listed[group]["group_type"] == "classic"
        described = admin.describe_groups([group])[group]
        assert described["error"] is None and described["group_state"] == "Stable"
        assert (described["protocol_type"], described["protocol_data"]) == ("consumer", "range")
        [member] = described["members"]
        assert member["client_id"] == "adm-consumer"
        # The member's subscription and the leader's assignment, as the clients sent them.
        assert member["member_metadata"]["topics"] == ["adm-a"]
        assert member["member_assignment"]["assigned_partitions"] == [{"topic": "adm-a", "partitions": [0]}]
        rd_admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap_servers})
        rd_listed = rd_admin.list_consumer_groups().result(timeout=30)
        assert group in {g.group_id for g in rd_listed.valid}
        [rd_described] = rd_admin.describe_consumer_groups([group]).values()
        description = rd_described.result(timeout=30)
        assert [m.client_id for m in description.members] == ["adm-consumer"]

        # OffsetDelete: not for a topic the Stable group's members subscribe to.
        errors = admin.delete_group_offsets(group, [kafka.TopicPartition("adm-a", 0), kafka.TopicPartition("adm-b", 0)])
        assert {tp.topic: e.__name__ for tp, e in errors.items()} == {
            "adm-a": "GroupSubscribedToTopicError",
            "adm-b": "NoError",
        }
        assert committed(cluster, group) == {("adm-a", 0): 5}
        assert dict(admin.delete_groups([group])) == {group: "NonEmptyGroupError"}
    finally:
        consumer.close()
    assert dict(admin.delete_groups([group])) == {group: "OK"}
    assert group not in {g["group"] for g in raftlog_cli(cluster, "groups", "list")}
    admin.close()


def test_a_static_member_back_within_its_session_keeps_its_partitions_without_a_rebalance(cluster):
    topic, group = "static-topic", "static-group"
    create_topic(cluster, topic, 2)

    def assigned(consumer):
        def check():
            consumer.poll(0.2)
            return {tp.partition for tp in consumer.assignment()} == {0, 1}

        wait_until(check, 60, "the static member's partitions")

    first = rdkafka_consumer(cluster, group, **{"group.instance.id": "static-1"})
    try:
        first.subscribe([topic])
        assigned(first)
        before = describe(cluster, group)
    finally:
        first.close()  # a static member sends no LeaveGroup: its place waits for its session
    second = rdkafka_consumer(cluster, group, **{"group.instance.id": "static-1"})
    try:
        second.subscribe([topic])
        assigned(second)
        after = describe(cluster, group)
    finally:
        second.close()
    assert [m["instance_id"] for m in before["members"]] == [m["instance_id"] for m in after["members"]] == ["static-1"]
    assert after["members"][0]["member_id"] != before["members"][0]["member_id"]  # a new incarnation
    assert after["group_epoch"] == before["group_epoch"]  # the same generation: no rebalance
    assert after["state"] == "Stable"
