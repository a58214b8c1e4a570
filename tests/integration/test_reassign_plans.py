"""kafka-reassign-partitions' workflow against real node processes: bad plans change nothing,
--cancel restores the old replicas, and a generated plan takes every partition off one broker
while an acks=all producer runs, throttled, verified, and the broker is then unregistered.

One three-node cluster for the module; the tests run in file order (the last one decommissions
broker 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.cluster.local import LocalCluster
from tests.integration.conftest import free_port_block, wait_until
from tests.integration.test_data_plane import FAST_ISR

pytestmark = pytest.mark.slow

THROTTLE_BYTES_PER_S = 256 * 1024
PRELOAD_BYTES_PER_PARTITION = 1536 * 1024  # six seconds of the throttle per moving replica
VALUE_BYTES = 4096


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = free_port_block(6)
    local = LocalCluster(
        tmp_path_factory.mktemp("reassign"), nodes=3, base_port=base, metrics_base_port=base + 3, extra_config=FAST_ISR
    )
    try:
        local.start()
        local.wait_for_brokers(3)
        yield local
    finally:
        local.stop()


def cli(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--bootstrap-server", cluster.bootstrap_servers],
        capture_output=True,
        text=True,
        timeout=60,
    )


def partitions_of(cluster, topic: str) -> list[dict]:
    with cluster.admin(timeout_ms=5000) as admin:
        return admin.describe_topics([topic])[0]["partitions"]


def dynamic_configs(cluster, entity_type: str, name: str) -> dict[str, str]:
    with cluster.admin(timeout_ms=5000) as admin:
        return {c["name"]: c["value"] for c in admin.describe_configs(entity_type, name)}


def preload(
    cluster, topic: str, partitions: list[int], size_bytes: int = PRELOAD_BYTES_PER_PARTITION
) -> dict[int, list[bytes]]:
    """size_bytes of numbered values into each partition, acks=all."""
    count = size_bytes // VALUE_BYTES
    sent: dict[int, list[bytes]] = {}
    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=5)
    try:
        for p in partitions:
            sent[p] = [b"pre-%d-%06d-" % (p, i) + b"x" * (VALUE_BYTES - 16) for i in range(count)]
            futures = [producer.send(topic, value, partition=p) for value in sent[p]]
            producer.flush(60)
            for future in futures:
                future.result(60)
    finally:
        producer.close(30)
    return sent


def write_plan(tmp_path: Path, name: str, document) -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def scrape(cluster, node_id: int, metric: str) -> float:
    url = f"http://127.0.0.1:{cluster.specs[node_id].metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(metric + " "):
                return float(line.split()[1])
    raise AssertionError(f"{metric} not exported by node {node_id}")


def settled(predicate, what: str):
    """A fresh client may ask a node that has not applied the last change yet: nodes converge in
    milliseconds, so state checks wait (bounded) instead of reading once."""
    return wait_until(predicate, 20, what)


def no_throttle_configs(cluster, topics: list[str], keep: dict[str, str] | None = None) -> bool:
    return all(dynamic_configs(cluster, "topics", t) == (keep or {}) for t in topics) and not any(
        dynamic_configs(cluster, "brokers", str(b)) for b in (1, 2, 3)
    )


def replica_bytes(cluster, broker_id: int, topic: str, partition: int) -> int:
    directory = cluster.specs[broker_id].home / "data" / f"{topic}-{partition}"
    try:
        return sum(f.stat().st_size for f in directory.glob("*.log"))
    except FileNotFoundError:  # not created yet, or removed between the glob and the stat
        return 0


# -- bad input changes nothing ------------------------------------------------------------------


def test_bad_plans_are_refused_and_change_nothing(cluster, tmp_path):
    with cluster.admin() as admin:
        admin.create_topic("bad", partitions=2, replication_factor=2)
    before = partitions_of(cluster, "bad")
    replicas = before[0]["replicas"]
    other = next(b for b in (1, 2, 3) if b not in replicas)
    good = {"topic": "bad", "partition": 0, "replicas": [other, replicas[0]]}

    def entry(**changes):
        return {"version": 1, "partitions": [good, {**good, "partition": 1, **changes}]}

    cases = {
        "malformed": ('{"version":1,"partitions":[', "not valid JSON"),
        "unknown topic": (entry(topic="nope"), "UNKNOWN_TOPIC_OR_PARTITION"),
        "unknown partition": (entry(partition=7), "UNKNOWN_TOPIC_OR_PARTITION"),
        "unknown broker": (entry(replicas=[1, 42]), "UNKNOWN_BROKER"),
        "duplicate replicas": (entry(replicas=[1, 1]), "more than once"),
    }
    for what, (document, message) in cases.items():
        plan = write_plan(tmp_path, "plan.json", document)
        result = cli(
            cluster, "partitions", "reassign", "--execute", "--reassignment-json-file", plan, "--throttle", "1000"
        )
        assert result.returncode == 1, (what, result.stdout)
        assert message in result.stderr and result.stderr.count("\n") == 1, (what, result.stderr)
    topics_file = write_plan(tmp_path, "topics.json", {"version": 1, "topics": [{"topic": "bad"}]})
    for brokers, message in (("1,42", "UNKNOWN_BROKER"), ("1", "names only 1 brokers")):
        result = cli(
            cluster, "partitions", "reassign", "--generate", "--topics-to-move-json-file", topics_file,
            "--broker-list", brokers,
        )  # fmt: skip
        assert result.returncode == 1 and message in result.stderr, result.stderr
    plan = write_plan(tmp_path, "plan.json", entry())
    for args, message in (
        (["--execute", "--verify"], "give one of"),
        (["--verify", "--throttle", "5"], "--throttle goes with --execute"),
    ):
        result = cli(cluster, "partitions", "reassign", "--reassignment-json-file", plan, *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    # Nothing moved, no throttle was set.
    assert partitions_of(cluster, "bad") == before
    assert "No partition reassignment is in progress." in cli(cluster, "partitions", "list-reassignments").stdout
    assert not dynamic_configs(cluster, "topics", "bad")
    assert not any(dynamic_configs(cluster, "brokers", str(b)) for b in (1, 2, 3))


# -- --cancel -----------------------------------------------------------------------------------


def test_cancel_restores_the_old_replicas_and_clears_the_throttle(cluster, tmp_path):
    with cluster.admin() as admin:
        admin.create_topic("cx", partitions=1, replication_factor=2)
    wait_until(lambda: len(partitions_of(cluster, "cx")[0]["isr"]) == 2, 20, "the ISR")
    preload(cluster, "cx", [0], 256 * 1024)
    [before] = partitions_of(cluster, "cx")
    newcomer = next(b for b in (1, 2, 3) if b not in before["replicas"])
    target = {"version": 1, "partitions": [{"topic": "cx", "partition": 0, "replicas": [newcomer, before["leader"]]}]}
    plan = write_plan(tmp_path, "cx.json", target)
    # 10 KiB/s: the newcomer would need 25 s, so the move is certainly still running below.
    started = cli(
        cluster, "partitions", "reassign", "--execute", "--reassignment-json-file", plan, "--throttle", "10240"
    )
    assert started.returncode == 0, started.stderr
    assert "Successfully started partition reassignments for cx-0" in started.stdout
    settled(
        lambda: (
            [
                (r["topic"], r["adding_replicas"])
                for r in json.loads(cli(cluster, "partitions", "list-reassignments", "--output", "json").stdout)
            ]
            == [("cx", [newcomer])]
        ),
        "list-reassignments to show the move",
    )
    again = cli(cluster, "partitions", "reassign", "--execute", "--reassignment-json-file", plan)
    assert again.returncode == 1 and "REASSIGNMENT_IN_PROGRESS" in again.stderr
    verify = json.loads(
        cli(cluster, "partitions", "reassign", "--verify", "--reassignment-json-file", plan, "--output", "json").stdout
    )
    assert [p["status"] for p in verify["partitions"]] == ["in progress"] and verify["throttles_cleared"] is None
    assert dynamic_configs(cluster, "brokers", str(newcomer))["follower.replication.throttled.rate"] == "10240"

    cancelled = cli(cluster, "partitions", "reassign", "--cancel", "--reassignment-json-file", plan)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "Successfully cancelled partition reassignments for: cx-0" in cancelled.stdout
    [after] = settled(
        lambda: (
            (p := partitions_of(cluster, "cx")) and not p[0]["adding_replicas"] and not p[0]["removing_replicas"] and p
        ),
        "the cancel to apply",
    )
    assert sorted(after["replicas"]) == sorted(before["replicas"]) and sorted(after["isr"]) == sorted(before["isr"])
    assert after["leader"] == before["leader"]
    settled(lambda: no_throttle_configs(cluster, ["cx"]), "the throttle configs to be gone")
    wait_until(lambda: replica_bytes(cluster, newcomer, "cx", 0) == 0, 20, "the cancelled replica to be deleted")
    nothing = cli(cluster, "partitions", "reassign", "--cancel", "--reassignment-json-file", plan)
    assert "None of the specified partition reassignments are active." in nothing.stdout


# -- decommissioning broker 3 under load --------------------------------------------------------


class AcksAllProducer:
    """Numbered values round-robin over the partitions, one every few ms, acks=all; remembers each
    acknowledged value."""

    def __init__(self, cluster, topic: str, partitions: int):
        self._producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=2)
        self._topic, self._partitions = topic, partitions
        self._stop = threading.Event()
        self.futures: list = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            value = b"live-%06d" % n
            self.futures.append((value, self._producer.send(self._topic, value, partition=n % self._partitions)))
            n += 1
            time.sleep(0.01)

    def acknowledged_so_far(self) -> int:
        return sum(1 for _, f in self.futures if f.done())

    def stop(self) -> list[bytes]:
        self._stop.set()
        self._thread.join(10)
        self._producer.flush(60)
        acked = []
        for value, future in self.futures:
            future.result(60)  # acks=all with retries: every record must be acknowledged
            acked.append(value)
        self._producer.close(30)
        return acked


def read_back(cluster, topic: str, partitions: int) -> list[bytes]:
    consumer = Consumer(cluster.bootstrap_servers, auto_offset_reset="earliest")
    values: list[bytes] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        last: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while any(last.get(tp.partition, -1) + 1 < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"read back only up to {last} of {ends}"
            for record in consumer.poll(timeout_ms=500):
                values.append(record.value)
                last[record.partition] = record.offset
    finally:
        consumer.close()
    return values


def test_decommission_a_broker_with_a_generated_throttled_plan_under_acks_all_load(cluster, tmp_path):
    topic, count = "dec", 3
    with cluster.admin() as admin:
        admin.create_topic(topic, partitions=count, replication_factor=2, config={"min.insync.replicas": "2"})
    wait_until(lambda: all(len(p["isr"]) == 2 for p in partitions_of(cluster, topic)), 20, "full ISRs")
    preloaded = preload(cluster, topic, list(range(count)))

    # Everything on broker 3 moves with one plan: this topic's partitions and the earlier tests'.
    everything = [{"topic": name} for name in ("bad", "cx", topic)]
    topics_file = write_plan(tmp_path, "topics.json", {"version": 1, "topics": everything})
    refused = cli(cluster, "cluster", "unregister", "--id", "3")
    assert refused.returncode == 1 and "is alive" in refused.stderr and "still holds" in refused.stderr
    generated = cli(
        cluster, "partitions", "reassign", "--generate", "--topics-to-move-json-file", topics_file,
        "--broker-list", "1,2", "--output", "json",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    plans = json.loads(generated.stdout)
    proposed_all = {(p["topic"], p["partition"]): p["replicas"] for p in plans["proposed"]["partitions"]}
    current_all = {(p["topic"], p["partition"]): p["replicas"] for p in plans["current"]["partitions"]}
    assert len(proposed_all) == 2 + 1 + count
    assert all(3 not in r and len(r) == 2 for r in proposed_all.values()), proposed_all
    assert all(proposed_all[k] == current_all[k] for k in current_all if 3 not in current_all[k])  # only what it must
    proposed = {p: r for (t, p), r in proposed_all.items() if t == topic}
    current = {p: r for (t, p), r in current_all.items() if t == topic}
    moves = {p: b for p in current for b in proposed[p] if b not in current[p]}  # partition -> receiving broker
    assert moves and len(moves) == sum(3 in r for r in current.values())
    plan = write_plan(tmp_path, "plan.json", plans["proposed"])

    producer = AcksAllProducer(cluster, topic, count)
    try:
        wait_until(lambda: producer.acknowledged_so_far() > 20, 30, "the producer to run")
        started = cli(
            cluster, "partitions", "reassign", "--execute", "--reassignment-json-file", plan,
            "--throttle", str(THROTTLE_BYTES_PER_S), "--replica-alter-log-dirs-throttle", "1",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert "--replica-alter-log-dirs-throttle is ignored" in started.stderr
        assert f"The inter-broker throttle limit was set to {THROTTLE_BYTES_PER_S} B/s" in started.stdout

        # The moving replicas' bytes on each receiving broker, sampled until the moves complete;
        # the rate is taken between the first samples past a quarter and past all of the preload
        # (bounded by bytes; each sample's time is taken after its sizes are read, so a stalled
        # sampler sees more bytes, not a shorter window).
        receivers = {broker: [p for p, b in moves.items() if b == broker] for broker in set(moves.values())}
        marks: dict[int, list[tuple[float, int]]] = {broker: [] for broker in receivers}  # (time, bytes)
        acked_at_start = producer.acknowledged_so_far()
        deadline = time.monotonic() + 120
        while any(len(m) < 2 for m in marks.values()):
            assert time.monotonic() < deadline, f"the moves did not complete: {marks}"
            for broker, mine in receivers.items():
                size = sum(replica_bytes(cluster, broker, topic, p) for p in mine)
                now = time.monotonic()
                threshold = len(mine) * PRELOAD_BYTES_PER_PARTITION // (4 if not marks[broker] else 1)
                if len(marks[broker]) < 2 and size >= threshold:
                    marks[broker].append((now, size))
            time.sleep(0.05)
        # Replication of in-sync replicas is not throttled: acks=all went on during the move.
        assert producer.acknowledged_so_far() > acked_at_start + 20

        for broker, [(t0, b0), (t1, b1)] in marks.items():  # per broker, all its throttled replicas together
            elapsed_s = max(t1 - t0, 1e-3)
            rate = (b1 - b0) / elapsed_s
            # At most the throttle plus the bucket's one-second burst over the window; at least a
            # tenth of it (a loaded machine is slower, never faster).
            burst_allowance = THROTTLE_BYTES_PER_S * 1.0 / elapsed_s
            assert rate <= 1.2 * THROTTLE_BYTES_PER_S + burst_allowance, (broker, rate, elapsed_s)
            assert rate >= THROTTLE_BYTES_PER_S / 10, (broker, rate, elapsed_s)
            print(
                f"broker {broker}: {rate / 1024:.0f} KiB/s over {elapsed_s:.1f} s (throttle {THROTTLE_BYTES_PER_S // 1024})"
            )

        def verified():
            result = cli(cluster, "partitions", "reassign", "--verify", "--reassignment-json-file", plan)
            return result.returncode == 0 and "still in progress" not in result.stdout and result

        done = wait_until(verified, 60, "--verify to report completion")
        assert done.stdout.count("is complete.") == len(proposed_all)
        assert "Clearing topic-level throttles on topic dec" in done.stdout
        settled(
            lambda: no_throttle_configs(cluster, [topic], keep={"min.insync.replicas": "2"}),
            "the throttle configs to be gone",
        )
        with cluster.admin() as admin:
            settled(lambda: admin.list_partition_reassignments() == [], "no reassignment left")
        for broker in receivers:  # the metric shows what went through the throttle
            throttled = 'raftlog_replication_throttled_bytes_total{side="follower"}'
            assert scrape(cluster, broker, throttled) >= PRELOAD_BYTES_PER_PARTITION
        for name in ("bad", "cx", topic):
            settled(lambda: all(3 not in p["replicas"] for p in partitions_of(cluster, name)), f"{name} off broker 3")
    finally:
        acked = producer.stop()

    # Nothing acknowledged is lost, nothing is duplicated.
    expected = [v for values in preloaded.values() for v in values] + acked
    stored = read_back(cluster, topic, count)
    lost = set(expected) - set(stored)
    duplicated = len(stored) - len(set(stored))
    assert (len(lost), duplicated) == (0, 0), f"lost {len(lost)}, duplicated {duplicated} of {len(expected)}"

    # Decommission: refused while broker 3 is alive, accepted once it is stopped and fenced.
    alive = cli(cluster, "cluster", "unregister", "--id", "3")
    assert alive.returncode == 1 and "is alive" in alive.stderr and "holds" not in alive.stderr
    cluster.stop_node(3)
    with cluster.admin([1, 2]) as admin:
        wait_until(lambda: next(b for b in admin.describe_cluster()["brokers"] if b["id"] == 3)["fenced"], 20, "fenced")
    gone = subprocess.run(
        [sys.executable, "-m", "cli.main", "cluster", "unregister", "--id", "3", "--bootstrap-server",
         ",".join(cluster.specs[i].address for i in (1, 2))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    with cluster.admin([1, 2]) as admin:
        settled(lambda: sorted(b["id"] for b in admin.describe_cluster()["brokers"]) == [1, 2], "broker 3 forgotten")
