"""The console producer and consumer never wait in silence: an error no retry can fix is reported
at once (a deleted topic, a partition that does not exist, no bootstrap server), and while a
retriable one is retried the producer says what it is waiting for, then fails with the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import free_port_block, wait_until

pytestmark = pytest.mark.slow

RAFTLOG = [sys.executable, "-m", "cli.main"]
NEVER_MS = "600000"  # a delivery timeout no test waits for: failing before it is the point


def run(*args: str, stdin: str = "", timeout_s: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(RAFTLOG + list(args), input=stdin, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def cluster(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    return cluster


def test_acks_all_below_min_insync_says_what_it_waits_for_then_fails_with_the_reason(cluster):
    with cluster.admin() as admin:
        admin.create_topic("thin", partitions=1, replication_factor=1, config={"min.insync.replicas": "2"})
    result = run(
        "produce", "thin", "--delivery-timeout-ms", "3000", "--bootstrap-server", cluster.bootstrap_servers, stdin="a\n"
    )
    assert result.returncode == 1, result.stderr
    assert "waiting: thin-0: NOT_ENOUGH_REPLICAS" in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: NOT_ENOUGH_REPLICAS"), result.stderr


def test_producing_to_a_topic_deleted_meanwhile_fails_before_the_delivery_timeout(cluster):
    with cluster.admin() as admin:
        admin.create_topic("doomed", partitions=1, replication_factor=3)
    producer = subprocess.Popen(
        RAFTLOG
        + ["produce", "doomed", "--delivery-timeout-ms", NEVER_MS, "--bootstrap-server", cluster.bootstrap_servers],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        producer.stdin.write("before\n")
        producer.stdin.flush()
        with cluster.admin() as admin:
            # The first record is in once the partition has it (the producer knows the topic now).
            wait_until(lambda: admin.list_offsets([("doomed", 0)], -1)[("doomed", 0)] >= 1, 30, "the first record")
            admin.delete_topic("doomed")
            wait_until(lambda: "doomed" not in admin.list_topics(), 30, "the topic to be gone")
        producer.stdin.write("after\n")
        producer.stdin.close()
        producer.wait(timeout=60)
        err = producer.stderr.read()
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    assert producer.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in err, err


def test_consuming_a_partition_that_does_not_exist_fails_at_once(cluster):
    with cluster.admin() as admin:
        admin.create_topic("small", partitions=2, replication_factor=3)
    result = run("consume", "small", "--partition", "7", "--bootstrap-server", cluster.bootstrap_servers, timeout_s=60)
    assert result.returncode == 1
    assert "UNKNOWN_TOPIC_OR_PARTITION: small has no partition 7 (it has 2)" in result.stderr, result.stderr
    result = run("consume", "absent", "--bootstrap-server", cluster.bootstrap_servers, timeout_s=60)
    assert result.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in result.stderr, result.stderr


def test_no_bootstrap_server_answering_fails_at_once_saying_so():
    nobody = f"127.0.0.1:{free_port_block(1)}"
    for args, stdin in ((["produce", "t"], "a\n"), (["consume", "t"], ""), (["topics", "list"], "")):
        result = run(*args, "--bootstrap-server", nobody, stdin=stdin, timeout_s=60)
        assert result.returncode == 1, result
        assert f"no bootstrap server ({nobody}) accepted a connection" in result.stderr, result.stderr
