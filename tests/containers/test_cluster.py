"""A three-node raftlog cluster in containers (the image of deploy/Dockerfile), driven from the
host through published ports, under the faults containers bring: docker kill, docker pause,
a container cut off its network, a container recreated on its old volumes, a rolling restart."""

from __future__ import annotations

import time

import pytest

from chaos.checker import check
from chaos.containers import INTERNAL_PORT, wait_until
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from tests.containers.workload import Workload, read_back

pytestmark = pytest.mark.slow

# Run inside a container: one acks=all Produce straight to the node's own INTERNAL listener,
# printing OK or the reason it was refused.
PRODUCE_TO_SELF = """
import sys, time, grpc
from raftlog.log.record_batch import encode_batch
from raftlog.v1 import broker_pb2, broker_pb2_grpc
batch = encode_batch([(None, sys.argv[2].encode(), None, int(time.time() * 1000))])
request = broker_pb2.ProduceRequest(acks=-1, timeout_ms=3000, partitions=[
    broker_pb2.PartitionRecords(topic=sys.argv[1], partition=0, records=batch)])
with grpc.insecure_channel("127.0.0.1:PORT") as channel:
    try:
        answer = broker_pb2_grpc.BrokerServiceStub(channel).Produce(request, timeout=10)
        print(answer.results[0].error_reason or "OK")
    except grpc.RpcError as exc:
        print("RPC_" + exc.code().name)
""".replace("PORT", str(INTERNAL_PORT))


def create_topic(cluster, name: str, partitions: int) -> None:
    with cluster.admin(timeout_ms=10_000) as admin:
        admin.create_topic(name, partitions=partitions, replication_factor=3)
    cluster.wait_for_full_isr(name)


def verdict_of(cluster, workload: Workload, topic: str, partitions: int):
    served = read_back(cluster.bootstrap, topic, partitions)
    return check(workload.acks, served), served


def test_the_nodes_are_healthy_and_serve_clients_on_the_host(cluster):
    def healthy() -> bool:
        states = [cluster.docker_container(n).attrs["State"].get("Health", {}).get("Status") for n in cluster.node_ids]
        return all(state == "healthy" for state in states)

    wait_until(healthy, 60, "docker to report every node healthy (gRPC health check)")

    create_topic(cluster, "plain", partitions=3)
    values = [b"value-%d" % i for i in range(600)]
    with Producer(cluster.bootstrap, acks="all", enable_idempotence=True) as producer:
        for value in values:
            producer.send("plain", value)
        producer.flush(60)
    served = read_back(cluster.bootstrap, "plain", 3)
    assert sorted(v for records in served.values() for _, v in records) == sorted(values)
    # the host was given the published (EXTERNAL) addresses, not the in-network ones
    with cluster.admin() as admin:
        hosts = {b["host"] for b in admin.describe_cluster()["brokers"]}
    assert hosts == {"127.0.0.1"}


def test_a_group_consumer_on_the_host_reaches_its_coordinator_through_the_published_listener(cluster):
    """FindCoordinator answers with the coordinator's address on the listener the client came in
    on: it gave the inter-broker one (raftlog-N:9092), which the host cannot resolve, so every
    group consumer outside the Docker network failed with BROKER_NOT_AVAILABLE."""
    create_topic(cluster, "grouped", partitions=3)
    with Producer(cluster.bootstrap, acks="all") as producer:
        for i in range(30):
            producer.send("grouped", b"%d" % i, partition=i % 3)
        producer.flush(60)
    consumer = Consumer(cluster.bootstrap, group_id="on-the-host", enable_auto_commit=False)
    try:
        consumer.subscribe(["grouped"])
        seen: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(seen) < 30 and time.monotonic() < deadline:
            seen += [record.value for record in consumer.poll(1000)]
        assert sorted(seen, key=int) == [b"%d" % i for i in range(30)]
        consumer.commit()
        partitions = [TopicPartition("grouped", p) for p in range(3)]
        assert consumer.committed(partitions) == {tp: 10 for tp in partitions}
    finally:
        consumer.close()


def test_docker_kill_of_the_partition_leader_loses_and_duplicates_nothing(cluster):
    create_topic(cluster, "kill", partitions=3)
    workload = Workload(cluster.bootstrap, "kill", partitions=3, records_per_s=200)
    workload.start()
    try:
        workload.wait_for_progress(300, timeout_s=60)
        leader = cluster.partitions("kill")[0]["leader"]
        killed_at = time.monotonic()
        cluster.kill_node(leader)
        workload.wait_for_progress(300, timeout_s=60)
        resumed_at = wait_until(
            lambda: workload.first_ack_of_a_send_after(killed_at, 0),
            60,
            "an acks=all record sent after the kill to be acknowledged",
        )
        print(
            f"\n[figure] docker kill of partition leader {leader} -> acks=all produce succeeds again "
            f"after {resumed_at - killed_at:.2f} s"
        )
        cluster.start_node(leader)
        cluster.wait_for_brokers(3)
        cluster.wait_for_full_isr("kill")
        workload.wait_for_progress(100, timeout_s=60)
        workload.stop()
    except BaseException:
        workload.abort()
        raise
    verdict, _ = verdict_of(cluster, workload, "kill", 3)
    assert verdict.ok, verdict.summary()
    assert verdict.acknowledged >= 700


def test_docker_pause_of_a_follower_takes_it_out_of_the_isr_and_back(cluster):
    create_topic(cluster, "pause", partitions=1)
    partition = cluster.partitions("pause")[0]
    with cluster.admin() as admin:
        controller = admin.describe_cluster()["controller_id"]
    followers = [r for r in partition["replicas"] if r != partition["leader"]]
    follower = next((r for r in followers if r != controller), followers[0])
    workload = Workload(cluster.bootstrap, "pause", partitions=1, records_per_s=100)
    workload.start()
    try:
        workload.wait_for_progress(50, timeout_s=60)
        cluster.pause(follower)
        others = [n for n in cluster.node_ids if n != follower]
        try:
            wait_until(
                lambda: follower not in cluster.partitions("pause", others)[0]["isr"],
                60,
                f"paused node {follower} to leave the ISR",
            )
            # acks=all writes go on with the two others (min.insync.replicas=2)
            workload.wait_for_progress(100, timeout_s=60)
        finally:
            cluster.unpause(follower)
        cluster.wait_for_full_isr("pause")
        workload.stop()
    except BaseException:
        workload.abort()
        raise
    verdict, _ = verdict_of(cluster, workload, "pause", 1)
    assert verdict.ok, verdict.summary()


def test_a_container_cut_off_its_network_cannot_commit_and_rejoins(cluster):
    create_topic(cluster, "cut", partitions=1)
    workload = Workload(cluster.bootstrap, "cut", partitions=1, records_per_s=100)
    workload.start()
    try:
        workload.wait_for_progress(50, timeout_s=60)
        cut = cluster.partitions("cut")[0]["leader"]
        others = [n for n in cluster.node_ids if n != cut]
        cluster.disconnect(cut)
        try:
            wait_until(
                lambda: cluster.partitions("cut", others)[0]["leader"] in others,
                60,
                f"a new leader of cut-0 once node {cut} is cut off",
            )
            workload.wait_for_progress(100, timeout_s=60)
            # The cut-off node still takes itself for the leader, but an acks=all write to it
            # cannot reach the ISR: it is refused or times out, never acknowledged.
            answer = cluster.docker_container(cut).exec_run(["python", "-c", PRODUCE_TO_SELF, "cut", "cut-off"])
            outcome = answer.output.decode().strip().splitlines()[-1]
            assert answer.exit_code == 0 and outcome != "OK", answer.output.decode()
        finally:
            cluster.connect(cut)
        cluster.wait_for_brokers(3)
        cluster.wait_for_full_isr("cut")
        workload.wait_for_progress(50, timeout_s=60)
        workload.stop()
    except BaseException:
        workload.abort()
        raise
    served = read_back(cluster.bootstrap, "cut", 1)
    assert b"cut-off" not in [value for _, value in served[0]], "a write the cut-off node took was served"
    verdict = check(workload.acks, served)
    assert verdict.ok, verdict.summary()


def test_containers_recreated_on_their_old_volumes_keep_the_data(cluster):
    create_topic(cluster, "keep", partitions=1)
    values = [b"kept-%d" % i for i in range(200)]
    with Producer(cluster.bootstrap, acks="all", enable_idempotence=True) as producer:
        for value in values:
            producer.send("keep", value)
        producer.flush(60)
    old_ids = {n: cluster.docker_container(n).id for n in cluster.node_ids}
    for n in cluster.node_ids:
        assert cluster.stop_node(n) == 0, cluster.logs(n)
    for n in cluster.node_ids:
        cluster.recreate(n)
    assert all(cluster.docker_container(n).id != old_ids[n] for n in cluster.node_ids)
    cluster.wait_for_brokers(3)
    cluster.wait_for_full_isr("keep")
    served = read_back(cluster.bootstrap, "keep", 1)
    assert [value for _, value in served[0]] == values


def test_a_rolling_restart_under_acks_all_load_loses_nothing(cluster):
    create_topic(cluster, "roll", partitions=3)
    workload = Workload(cluster.bootstrap, "roll", partitions=3, records_per_s=200)
    workload.start()
    started_at = time.monotonic()
    try:
        workload.wait_for_progress(200, timeout_s=60)
        for n in cluster.node_ids:
            # docker stop is SIGTERM: a clean shutdown (exit 0) that hands leadership over
            assert cluster.stop_node(n) == 0, cluster.logs(n)
            cluster.start_node(n)
            cluster.wait_for_brokers(3)
            cluster.wait_for_full_isr("roll")
            workload.wait_for_progress(100, timeout_s=60)
        workload.stop()
    except BaseException:
        workload.abort()
        raise
    print(
        f"\n[figure] rolling restart of 3 containers: longest acks=all latency "
        f"{workload.longest_ack_latency_s(started_at):.2f} s, failures {workload.failures}"
    )
    verdict, _ = verdict_of(cluster, workload, "roll", 3)
    assert verdict.ok, verdict.summary()
