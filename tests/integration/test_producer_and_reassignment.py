"""Idempotent retries with lost responses, partition reassignment and preferred leader election,
against real node processes on loopback."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import time

import grpc
import pytest

from chaos.workload import stored_records
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from tests.integration.conftest import describe_partition, wait_until
from tests.integration.test_data_plane import FAST_ISR

pytestmark = pytest.mark.slow

PRODUCE_STREAM_METHOD = "/raftlog.v1.BrokerService/ProduceStream"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=60)


def read_partition(bootstrap: str, topic: str, partition: int = 0, timeout_s: float = 30) -> list[tuple[int, bytes]]:
    """Every (offset, value) from the log start up to the partition's current end (high watermark)."""
    tp = TopicPartition(topic, partition)
    records: list[tuple[int, bytes]] = []
    consumer = Consumer(bootstrap, auto_offset_reset="earliest")
    try:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        deadline = time.monotonic() + timeout_s
        # (not consumer.position(): it is the fetch position, which runs ahead of what poll() returned)
        while end > 0 and (not records or records[-1][0] + 1 < end):
            assert time.monotonic() < deadline, f"read only {len(records)} records of {topic}-{partition} up to {end}"
            records += [(r.offset, r.value) for r in consumer.poll(timeout_ms=500)]
    finally:
        consumer.close()
    return records


def produce(producer: Producer, topic: str, values: list[bytes], timeout_s: float = 60) -> list[int]:
    """Sends every value to partition 0, flushes, returns the acknowledged offsets (raises on any failure)."""
    futures = [producer.send(topic, value, partition=0) for value in values]
    producer.flush(timeout_s)
    return [future.result(timeout_s).offset for future in futures]


def assert_exactly_once_in_order(records: list[tuple[int, bytes]], expected: list[bytes]) -> None:
    offsets = [o for o, _ in records]
    assert offsets == list(range(len(offsets))), "offsets are dense from 0"
    values = [v for _, v in records]
    duplicated = len(values) - len(set(values))
    assert duplicated == 0, f"{duplicated} records stored twice"
    assert values == expected, "every record exactly once, in send order"


# -- 1. idempotent producer, lost responses ---------------------------------------------------


class DropProduceResponses(grpc.aio.StreamStreamClientInterceptor):
    """Lets every Produce request on the producer's ProduceStream reach the broker and waits for
    its answer, then, for a share of the answers, throws it away and cuts the stream with
    UNAVAILABLE, as a dropped connection would: the broker has appended (and, with acks=all,
    replicated) the batch, the producer never learns it (nor the answers to the other requests
    in flight on that stream) and retries.

    Runs on the producer's event loop; the counters are read after flush()."""

    def __init__(self, drop_rate: float, seed: int):
        self._drop_rate = drop_rate
        self._random = random.Random(seed)
        self.requests = 0
        self.dropped = 0  # answers thrown away (each cutting its stream)
        self.dropped_after_append = 0  # ... of which the broker had accepted the batch
        self.resent = 0  # requests carrying a batch (producer id, sequence) that was sent before
        self.sent_batches: set[tuple[int, int]] = set()
        self.dropped_offsets: dict[tuple[int, int], int] = {}  # (pid, seq) -> base offset the client never saw
        self.answered_offsets: dict[tuple[int, int], int] = {}  # (pid, seq) -> base offset the client got

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        if method != PRODUCE_STREAM_METHOD:
            return await continuation(client_call_details, request_iterator)
        keys_by_correlation_id: dict[int, list[tuple[int, int]]] = {}

        async def counted_requests():
            async for envelope in request_iterator:
                self.requests += 1
                keys = [batch_key(p.records) for p in envelope.request.partitions]
                for key in keys:
                    self.resent += key in self.sent_batches
                    self.sent_batches.add(key)
                keys_by_correlation_id[envelope.correlation_id] = keys
                yield envelope

        call = await continuation(client_call_details, counted_requests())

        async def answers_some_dropped():
            async for answered in call:  # the broker has handled the request
                keys = keys_by_correlation_id.pop(answered.correlation_id, [])
                results = answered.response.results if not answered.HasField("error") else []
                if self._random.random() < self._drop_rate:
                    self.dropped += 1
                    if any(not result.error_reason for result in results):
                        self.dropped_after_append += 1
                    for key, result in zip(keys, results):
                        if not result.error_reason:
                            self.dropped_offsets.setdefault(key, result.base_offset)
                    call.cancel()
                    raise grpc.aio.AioRpcError(
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.aio.Metadata(),
                        grpc.aio.Metadata(),
                        details="test: Produce stream cut before an answer",
                    )
                for key, result in zip(keys, results):
                    if not result.error_reason:
                        self.answered_offsets[key] = result.base_offset
                yield answered

        return answers_some_dropped()


def batch_key(records: bytes) -> tuple[int, int]:
    """(producer id, base sequence) from a RecordBatch v2 header."""
    producer_id, _epoch, base_sequence = struct.unpack_from(">qhi", records, 43)
    return producer_id, base_sequence


def test_idempotent_retries_after_lost_responses_never_duplicate(make_cluster, monkeypatch):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("idem", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    wait_until(lambda: sorted(describe_partition(cluster, "idem")["isr"]) == [1, 2, 3], 20, "the full ISR")

    dropper = DropProduceResponses(drop_rate=0.3, seed=20240611)
    original_channel = grpc.aio.insecure_channel

    def channel_with_dropper(target, options=None, compression=None, interceptors=None):
        return original_channel(
            target, options=options, compression=compression, interceptors=[*(interceptors or []), dropper]
        )

    values = [b"idem-%05d" % i for i in range(2000)]
    # The producer's channels are made lazily on its loop; they keep the interceptor after the context.
    with monkeypatch.context() as patch:
        patch.setattr(grpc.aio, "insecure_channel", channel_with_dropper)
        producer = Producer(
            cluster.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            batch_size=1024,
            retry_backoff_ms=20,
            delivery_timeout_ms=60_000,
        )
        try:
            futures = [producer.send("idem", value, partition=0) for value in values]
            producer.flush(90)
            acked = [future.result(5).offset for future in futures]  # raises if any send failed
        finally:
            producer.close(30)

    assert dropper.requests >= 60, f"only {dropper.requests} Produce requests: batches are too big to matter"
    assert dropper.dropped_after_append > 0, "no response of an appended batch was dropped"
    assert dropper.resent >= dropper.dropped, (
        f"{dropper.dropped} responses dropped but only {dropper.resent} batches resent"
    )
    # Every batch whose answer was lost was acknowledged later, by a retry, with the original offset.
    assert set(dropper.dropped_offsets) <= set(dropper.answered_offsets)
    moved = {
        k: (v, dropper.answered_offsets[k])
        for k, v in dropper.dropped_offsets.items()
        if dropper.answered_offsets[k] != v
    }
    assert not moved, f"retries acknowledged at other offsets than the first append: {moved}"

    assert acked == list(range(len(values))), "acknowledged offsets are the send order"
    records = read_partition(cluster.bootstrap_servers, "idem")
    assert_exactly_once_in_order(records, values)


# -- 2. partition reassignment ------------------------------------------------------------------


def _stored_values(directory) -> list[bytes]:
    """The values in a partition directory, read from the files (the node must be stopped)."""
    return [value for _, value in stored_records(directory)]


def test_reassignment_moves_a_partition_onto_the_third_node(make_cluster):
    cluster = make_cluster(extra_config=FAST_ISR)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("moving", partitions=1, replication_factor=2)
    before = wait_until(
        lambda: (p := describe_partition(cluster, "moving")) and len(p["isr"]) == 2 and p, 20, "the ISR"
    )
    old_leader, kept = before["leader"], next(r for r in before["replicas"] if r != before["leader"])
    [newcomer] = [i for i in cluster.specs if i not in before["replicas"]]
    moved_dir = cluster.specs[newcomer].home / "data" / "moving-0"
    assert not moved_dir.exists()

    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=2, retry_backoff_ms=50)
    try:
        values = [b"before-%04d" % i for i in range(600)]
        assert produce(producer, "moving", values) == list(range(600))

        # The newcomer first, so it is the preferred leader; the current leader leaves the replica set.
        target = [newcomer, kept]
        result = cli(
            "partitions",
            "reassign",
            "--topic",
            "moving",
            "--partition",
            "0",
            "--replicas",
            ",".join(map(str, target)),
            "--output",
            "json",
            "--bootstrap-server",
            cluster.bootstrap_servers,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["replicas"] == target
        during = [b"during-%04d" % i for i in range(200)]  # while the newcomer catches up and leadership moves
        produce(producer, "moving", during)
        values += during

        after = wait_until(
            lambda: (
                (p := describe_partition(cluster, "moving"))
                and p["replicas"] == target
                and sorted(p["isr"]) == sorted(target)
                and not p["adding_replicas"]
                and not p["removing_replicas"]
                and p
            ),
            30,
            "the reassignment to complete",
        )
        assert after["leader"] == newcomer, after  # the old leader was removed: the first of the new ISR leads
        assert after["leader_epoch"] > before["leader_epoch"]
        assert moved_dir.exists()
        old_dir = cluster.specs[old_leader].home / "data" / "moving-0"
        wait_until(lambda: not old_dir.exists(), 20, "the removed replica to delete its data")

        # The old replica is not needed any more: stop it, then produce and read everything back.
        cluster.stop_node(old_leader)
        later = [b"after-%04d" % i for i in range(200)]
        produce(producer, "moving", later)
        values += later
    finally:
        producer.close(30)
    survivors = ",".join(cluster.specs[i].address for i in target)
    assert_exactly_once_in_order(read_partition(survivors, "moving"), values)

    # Every record is on the newcomer's disk (and on the kept replica's), read from the files.
    for node_id in target:
        cluster.stop_node(node_id)
    assert _stored_values(moved_dir) == values
    assert _stored_values(cluster.specs[kept].home / "data" / "moving-0") == values


# -- 3. preferred leader election ---------------------------------------------------------------


def test_preferred_leader_election_after_the_preferred_leader_returns(make_cluster):
    # The operator's election; the automatic one is tested in test_leader_balance.py.
    cluster = make_cluster(extra_config={**FAST_ISR, "auto.leader.rebalance.enable": False})
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("pref", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    initial = wait_until(
        lambda: (p := describe_partition(cluster, "pref")) and len(p["isr"]) == 3 and p, 20, "the full ISR"
    )
    preferred = initial["replicas"][0]
    assert initial["leader"] == preferred
    others = [i for i in cluster.specs if i != preferred]
    cluster.remember_epochs()

    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=2, retry_backoff_ms=50)
    try:
        values = [b"first-%04d" % i for i in range(300)]
        produce(producer, "pref", values)

        cluster.kill_node(preferred)
        failover = wait_until(
            lambda: (
                (p := describe_partition(cluster, "pref", others))["leader"] not in (preferred, -1)
                and preferred not in p["isr"]
                and p
            ),
            20,
            "a new leader without the killed one",
        )
        outage = [b"outage-%04d" % i for i in range(300)]
        produce(producer, "pref", outage)
        values += outage

        cluster.start_node(preferred)
        cluster.wait_for_rejoin(preferred, timeout_s=30)
        back = wait_until(
            lambda: (p := describe_partition(cluster, "pref")) and preferred in p["isr"] and p,
            30,
            "the restarted preferred replica to rejoin the ISR",
        )
        assert back["leader"] == failover["leader"], "with auto.leader.rebalance.enable=false nothing moves it back"

        result = cli(
            "partitions",
            "elect-leaders",
            "--election-type",
            "preferred",
            "--topic",
            "pref",
            "--partition",
            "0",
            "--output",
            "json",
            "--bootstrap-server",
            cluster.bootstrap_servers,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout) == [{"topic": "pref", "partition": 0, "error": None, "message": None}]
        elected = wait_until(
            lambda: (p := describe_partition(cluster, "pref")) and p["leader"] == preferred and p,
            20,
            "the preferred replica to lead again",
        )
        assert elected["leader_epoch"] > back["leader_epoch"]
        assert elected["replicas"] == initial["replicas"]

        again = cli(
            "partitions",
            "elect-leaders",
            "--topic",
            "pref",
            "--partition",
            "0",
            "--output",
            "json",
            "--bootstrap-server",
            cluster.bootstrap_servers,
        )
        assert again.returncode == 0 and json.loads(again.stdout)[0]["error"] == "ELECTION_NOT_NEEDED", again.stdout

        last = [b"last-%04d" % i for i in range(300)]
        produce(producer, "pref", last)
        values += last
    finally:
        producer.close(30)
    assert_exactly_once_in_order(read_partition(cluster.bootstrap_servers, "pref"), values)
