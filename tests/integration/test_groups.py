"""Consumer groups against real broker processes: joins, kills, coordinator failover, the groups CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from raftlog.client import Admin, Consumer, Producer, TopicPartition
from raftlog.errors import Errors, RaftlogError
from tests.integration.conftest import wait_until
from tests.integration.test_metrics import scrape, value

pytestmark = pytest.mark.slow
SESSION_MS = 3000
GROUP_CONFIG = {
    "group.consumer.session.timeout.ms": SESSION_MS,
    "group.consumer.heartbeat.interval.ms": 200,
    "replica.lag.time.max.ms": 1500,
    "broker.session.timeout.ms": 2500,
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=60)


def start_cluster(make_cluster, topic: str, partitions: int, metrics: bool = False, session_ms: int = SESSION_MS):
    cluster = make_cluster(
        extra_config={**GROUP_CONFIG, "group.consumer.session.timeout.ms": session_ms}, metrics=metrics
    )
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic(topic, partitions, 3)
    return cluster


def produce(bootstrap: str, topic: str, count: int, start: int = 0) -> None:
    producer = Producer(bootstrap, acks="all")
    try:
        for i in range(start, start + count):
            producer.send(topic, value=str(i).encode(), key=str(i).encode())
        producer.flush()
    finally:
        producer.close()


def assignments(admin: Admin, group: str) -> dict[str, set]:
    return {m["member_id"]: {tuple(tp) for tp in m["assignment"]} for m in admin.describe_group(group)["members"]}


def stable_with(admin: Admin, group: str, members: int, partitions: int):
    d = admin.describe_group(group)
    owned = sum(len(m["assignment"]) for m in d["members"])
    return d if d["state"] == "Stable" and len(d["members"]) == members and owned == partitions else None


class ConsumerThread:
    """A group member polling in its own thread, recording what it is given and gives up."""

    def __init__(self, bootstrap: str, group: str, topic: str, instance_id: str | None = None):
        self.records = 0
        self.revoked: list[set] = []
        self.consumer = Consumer(bootstrap, group_id=group, auto_commit_interval_ms=500, group_instance_id=instance_id)
        self.consumer.subscribe([topic], on_revoke=lambda tps: self.revoked.append(tps))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.records += len(self.consumer.poll(100))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def group_consumer_process(bootstrap: str, group: str, topic: str, out_path, instance_id: str | None = None):
    args = [
        sys.executable,
        "-m",
        "cli.main",
        "consume",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--output",
        "json",
        "--bootstrap-server",
        bootstrap,
    ]
    if instance_id:
        args += ["--group-instance-id", instance_id]
    out = open(out_path, "a")
    err = open(f"{out_path}.err", "a")  # kept for a failure's post-mortem
    return subprocess.Popen(args, stdout=out, stderr=err)


def test_a_fourth_member_takes_only_its_share(make_cluster):
    cluster = start_cluster(make_cluster, "orders", 12)
    bootstrap = cluster.bootstrap_servers
    produce(bootstrap, "orders", 120)
    members = [ConsumerThread(bootstrap, "g", "orders") for _ in range(3)]
    try:
        with cluster.admin() as admin:
            wait_until(lambda: stable_with(admin, "g", 3, 12), 30, "three members with four partitions each")
            before = assignments(admin, "g")
            assert sorted(len(a) for a in before.values()) == [4, 4, 4]
            counts_before = [m.records for m in members]
            for m in members:
                m.revoked.clear()  # the revocations of the group's forming are not this test's
            members.append(ConsumerThread(bootstrap, "g", "orders"))
            wait_until(lambda: stable_with(admin, "g", 4, 12), 30, "four members")
            after = assignments(admin, "g")
        assert sorted(len(a) for a in after.values()) == [3, 3, 3, 3]
        for member_id, owned in before.items():
            assert after[member_id] <= owned, f"{member_id} was given partitions on a join: {after[member_id] - owned}"
        # Each existing member gave up exactly one partition, and nothing else.
        for m in members[:3]:
            assert sum(len(r) for r in m.revoked) == 1, m.revoked
        produce(bootstrap, "orders", 120, start=120)
        wait_until(
            lambda: all(m.records > c for m, c in zip(members, counts_before)) and members[3].records > 0,
            30,
            "every member, old and new, consuming",
        )
    finally:
        for m in members:
            m.close()


STATIC_SESSION_MS = 10_000  # longer than the old incarnation takes to commit and leave on a loaded machine


def test_killed_member_is_replaced_after_its_session_and_static_member_keeps_its_partitions(make_cluster, tmp_path):
    # With a 3 s session, a restart under load (load average 25-40) came back after the session
    # had run out, and the static member rightly lost its partitions.
    cluster = start_cluster(make_cluster, "events", 6, session_ms=STATIC_SESSION_MS)
    bootstrap = cluster.bootstrap_servers
    produce(bootstrap, "events", 60)
    a = group_consumer_process(bootstrap, "g", "events", tmp_path / "a.out", instance_id="host-a")
    b = group_consumer_process(bootstrap, "g", "events", tmp_path / "b.out")
    restarted = None
    try:
        with cluster.admin() as admin:
            wait_until(lambda: stable_with(admin, "g", 2, 6), 30, "two members")
            by_instance = {m["instance_id"]: m for m in admin.describe_group("g")["members"]}
            static_owned = {tuple(tp) for tp in by_instance["host-a"]["assignment"]}
            epoch = admin.describe_group("g")["group_epoch"]
            # A static member restarted within its session: nothing moves, the epoch stays. The
            # new incarnation is a consumer in this process, so that it is back within the session
            # however long a new interpreter takes to start on a loaded machine (under load 25-40
            # a restarted CLI process sometimes came back after the session had run out, and the
            # member then rightly lost its partitions).
            a.send_signal(signal.SIGTERM)
            a.wait(15)
            restarted = ConsumerThread(bootstrap, "g", "events", instance_id="host-a")
            wait_until(
                lambda: (
                    stable_with(admin, "g", 2, 6)
                    and any(
                        m["instance_id"] == "host-a" and m["member_id"] != by_instance["host-a"]["member_id"]
                        for m in admin.describe_group("g")["members"]
                    )
                ),
                20,
                "the static member back",
            )
            back = {m["instance_id"]: m for m in admin.describe_group("g")["members"]}["host-a"]
            assert {tuple(tp) for tp in back["assignment"]} == static_owned
            assert admin.describe_group("g")["group_epoch"] == epoch
            # A second live process with the same group.instance.id is refused (KIP-848's
            # UNRELEASED_INSTANCE_ID) and exits; the holder keeps its member id and partitions.
            twin = group_consumer_process(bootstrap, "g", "events", tmp_path / "twin.out", instance_id="host-a")
            assert twin.wait(30) == 1
            assert "UNRELEASED_INSTANCE_ID" in (tmp_path / "twin.out.err").read_text()
            still = {m["instance_id"]: m for m in admin.describe_group("g")["members"]}["host-a"]
            assert still["member_id"] == back["member_id"]
            assert {tuple(tp) for tp in still["assignment"]} == static_owned
            assert admin.describe_group("g")["group_epoch"] == epoch
            # kill -9 of the dynamic member: its partitions move once its session has run out.
            b.kill()
            b.wait(10)
            killed_at = time.monotonic()
            wait_until(
                lambda: stable_with(admin, "g", 1, 6), STATIC_SESSION_MS / 1000 + 20, "the survivor owning all six"
            )
            assert time.monotonic() - killed_at >= STATIC_SESSION_MS / 1000 * 0.8
    finally:
        if restarted is not None:
            restarted.close()
        for process in (a, b):
            if process.poll() is None:
                process.kill()
                process.wait(10)


def committed_offsets(admin: Admin, group: str) -> dict:
    return admin.list_group_offsets(group)


def test_coordinator_kill_keeps_committed_offsets(make_cluster, tmp_path):
    cluster = start_cluster(make_cluster, "pay", 6)
    bootstrap = cluster.bootstrap_servers
    produce(bootstrap, "pay", 300)
    member = group_consumer_process(bootstrap, "g", "pay", tmp_path / "m.out")
    seen: dict = {}

    def check_monotonic(offsets: dict) -> None:
        for tp, offset in offsets.items():
            assert offset >= seen.get(tp, 0), f"committed offset of {tp} went back: {seen[tp]} -> {offset}"
            seen[tp] = offset

    try:
        with cluster.admin(timeout_ms=15000) as admin:

            def all_committed(total):
                offsets = committed_offsets(admin, "g")
                check_monotonic(offsets)
                return sum(offsets.values()) == total

            wait_until(lambda: all_committed(300), 60, "300 records committed")
            coordinator = admin.describe_group("g")["coordinator"]
        cluster.kill_node(coordinator)
        survivors = [n for n in cluster.specs if n != coordinator]
        produce(",".join(cluster.specs[n].address for n in survivors), "pay", 100, start=300)
        with cluster.admin(survivors, timeout_ms=15000) as admin:
            wait_until(lambda: all_committed(400), 60, "400 records committed after the coordinator's kill")
            new_coordinator = admin.describe_group("g")["coordinator"]
            assert new_coordinator != coordinator
        # The new coordinator loaded the group from its offset store (rows materialized while it
        # followed), replaying only the log beyond the applied offset.
        loads = [
            line
            for line in cluster.specs[new_coordinator].log_path.read_text().splitlines()
            if "loaded 1 groups" in line
        ]
        assert loads and " 0 rows from the offset store" not in loads[0], loads
    finally:
        member.kill()
        member.wait(10)
    values = [int(json.loads(line)["value"]) for line in open(tmp_path / "m.out")]
    assert set(values) == set(range(400)), "every record processed at least once"


def test_describe_lag_reset_offsets_and_delete(make_cluster, tmp_path):
    cluster = start_cluster(make_cluster, "logs", 1, metrics=True)
    bootstrap = cluster.bootstrap_servers
    produce(bootstrap, "logs", 100)
    consumer = Consumer(bootstrap, group_id="g", enable_auto_commit=False)
    tp = TopicPartition("logs", 0)
    try:
        consumer.subscribe(["logs"])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 60 and time.monotonic() < deadline:
            got += consumer.poll(200)
        consumer.commit({tp: 60})
        assert consumer.committed([tp]) == {tp: 60}
        with pytest.raises(RaftlogError) as no_partition:
            consumer.commit({TopicPartition("logs", 7): 1})
        assert no_partition.value.error is Errors.UNKNOWN_TOPIC_OR_PARTITION
        assert consumer.committed([tp]) == {tp: 60}
        # Refused while the member is there, naming it.
        refused = cli(
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "logs",
            "--to-earliest",
            "--execute",
            "--bootstrap-server",
            bootstrap,
        )
        member_id = consumer._consumer._group.member_id
        assert refused.returncode == 1 and "NON_EMPTY_GROUP" in refused.stderr and member_id in refused.stderr
        delete = cli("groups", "delete", "--group", "g", "--bootstrap-server", bootstrap)
        assert delete.returncode == 1 and "NON_EMPTY_GROUP" in delete.stderr
    finally:
        consumer.close()  # no auto-commit: the committed offset stays 60
    with Admin(bootstrap) as admin:
        coordinator = admin.describe_group("g")["coordinator"]
    samples = scrape(cluster, coordinator)
    assert value(samples, "raftlog_group_lag", group="g", topic="logs", partition="0") == 40
    assert value(samples, "raftlog_group_lag_seconds", group="g", topic="logs", partition="0") > 0
    assert value(samples, "raftlog_group_members", group="g") == 0
    assert value(samples, "raftlog_group_state", group="g", state="Empty") == 1
    assert value(samples, "raftlog_offset_commits_total") >= 1
    assert value(samples, "raftlog_group_rebalances_total") >= 2  # the join and the leave
    described = cli("groups", "describe", "--group", "g", "--output", "json", "--bootstrap-server", bootstrap)
    assert described.returncode == 0, described.stderr
    [row] = json.loads(described.stdout)
    assert (row["current_offset"], row["log_end_offset"], row["lag"]) == (60, 100, 40)
    assert row["lag_ms"] >= 0
    text = cli("groups", "describe", "--group", "g", "--bootstrap-server", bootstrap).stdout
    assert text.splitlines()[0].split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-MS",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    state = json.loads(
        cli("groups", "describe", "--group", "g", "--state", "--output", "json", "--bootstrap-server", bootstrap).stdout
    )
    assert state[0]["state"] == "Empty" and state[0]["members"] == 0
    listed = json.loads(cli("groups", "list", "--output", "json", "--bootstrap-server", bootstrap).stdout)
    assert listed == [{"group": "g", "type": "consumer", "state": "Empty"}]
    # Dry run (the default) prints and changes nothing; --execute applies.
    dry = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--topic",
        "logs",
        "--to-earliest",
        "--output",
        "json",
        "--bootstrap-server",
        bootstrap,
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == [{"group": "g", "topic": "logs", "partition": 0, "new_offset": 0}]
    with Admin(bootstrap) as admin:
        assert admin.list_group_offsets("g") == {("logs", 0): 60}
    beyond = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--topic",
        "logs:0",
        "--to-offset",
        "500",
        "--execute",
        "--bootstrap-server",
        bootstrap,
    )
    assert beyond.returncode == 1 and "OFFSET_OUT_OF_RANGE" in beyond.stderr
    shifted = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--topic",
        "logs:0",
        "--shift-by",
        "-10",
        "--execute",
        "--bootstrap-server",
        bootstrap,
    )
    assert shifted.returncode == 0, shifted.stderr
    with Admin(bootstrap) as admin:
        assert admin.list_group_offsets("g") == {("logs", 0): 50}
    # The other ways to name new offsets.
    by_duration = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--topic",
        "logs",
        "--by-duration",
        "PT1H",
        "--output",
        "json",
        "--bootstrap-server",
        bootstrap,
    )
    assert json.loads(by_duration.stdout)[0]["new_offset"] == 0  # every record is newer than an hour
    future = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--all-topics",
        "--to-datetime",
        "2999-01-01T00:00:00",
        "--output",
        "json",
        "--bootstrap-server",
        bootstrap,
    )
    assert json.loads(future.stdout)[0]["new_offset"] == 100
    plan = tmp_path / "plan.csv"
    plan.write_text("logs,0,33\n")
    from_file = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--from-file",
        str(plan),
        "--execute",
        "--bootstrap-server",
        bootstrap,
    )
    assert from_file.returncode == 0, from_file.stderr
    with Admin(bootstrap) as admin:
        assert admin.list_group_offsets("g") == {("logs", 0): 33}
    bad_duration = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--all-topics",
        "--by-duration",
        "1 hour",
        "--bootstrap-server",
        bootstrap,
    )
    assert bad_duration.returncode == 1 and "ISO-8601" in bad_duration.stderr
    shifted = cli(
        "groups",
        "reset-offsets",
        "--group",
        "g",
        "--topic",
        "logs:0",
        "--shift-by",
        "17",
        "--execute",
        "--bootstrap-server",
        bootstrap,
    )
    assert shifted.returncode == 0, shifted.stderr
    unknown = cli("groups", "describe", "--group", "nobody", "--bootstrap-server", bootstrap)
    assert unknown.returncode == 1 and "GROUP_ID_NOT_FOUND" in unknown.stderr
    # The offsets topic decodes readably, as kafka-dump-log's --offsets-decoder does.
    dumps = [
        cli("log", "dump", str(path), "--offsets-decoder").stdout
        for path in (cluster.data_dir / "node-1" / "data").glob("__consumer_offsets-*")
    ]
    assert any("offset_commit::group=g,topic=logs,partition=0 payload: offset=50" in d for d in dumps)
    assert any("group_metadata::group=g payload: epoch=" in d for d in dumps)
    assert (
        cli("groups", "delete-offsets", "--group", "g", "--topic", "logs", "--bootstrap-server", bootstrap).returncode
        == 0
    )
    with Admin(bootstrap) as admin:
        assert admin.list_group_offsets("g") == {}
    assert cli("groups", "delete", "--group", "g", "--bootstrap-server", bootstrap).returncode == 0
    assert json.loads(cli("groups", "list", "--output", "json", "--bootstrap-server", bootstrap).stdout) == []
    # A consumer with a group id but manual assign() commits too (the group has no members).
    manual = Consumer(bootstrap, group_id="manual", enable_auto_commit=False)
    try:
        manual.assign([tp])
        manual.commit({tp: 12})
        assert manual.committed([tp]) == {tp: 12}
    finally:
        manual.close()
    other = Consumer(bootstrap, group_id="other")
    try:
        with pytest.raises(RaftlogError) as bad_pattern:
            other.subscribe(pattern="logs((")
        assert bad_pattern.value.error is Errors.INVALID_REGULAR_EXPRESSION
    finally:
        other.close()


def test_at_least_once_through_member_and_coordinator_kills(make_cluster, tmp_path):
    """Produce with acks=all while members are killed -9 and restarted and the coordinator's broker
    is killed twice: every record is processed, commits never go back and never pass what was
    processed (the console consumer commits only what it printed)."""
    cluster = start_cluster(make_cluster, "jobs", 6)
    bootstrap = cluster.bootstrap_servers
    cluster.remember_epochs()
    outputs = [tmp_path / f"member-{i}.out" for i in range(3)]
    members = [group_consumer_process(bootstrap, "g", "jobs", out) for out in outputs]
    stop_producing, produced = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    sent = [0]

    def producer() -> None:
        try:
            p = Producer(bootstrap, acks="all")
            while not stop_producing.is_set() and sent[0] < 20_000:
                p.send("jobs", value=str(sent[0]).encode(), key=str(sent[0]).encode())
                sent[0] += 1
                time.sleep(0.01)
            p.flush()
            p.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            produced.set()

    seen: dict = {}

    def processed_max() -> dict:
        best: dict = {}
        for out in outputs:
            for line in out.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by kill -9
                key = ("jobs", record["partition"])
                best[key] = max(best.get(key, -1), record["offset"])
        return best

    def check_commits(admin) -> int:
        offsets = admin.list_group_offsets("g")
        processed = processed_max()  # read after the commits: it can only have grown since
        for tp, offset in offsets.items():
            assert offset >= seen.get(tp, 0), f"committed offset of {tp} went back: {seen[tp]} -> {offset}"
            assert offset <= processed.get(tp, -1) + 1, f"{tp} committed {offset} past what was processed"
            seen[tp] = offset
        return sum(offsets.values())

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        with cluster.admin(timeout_ms=20000) as admin:
            wait_until(lambda: check_commits(admin) >= 50, 60, "the group committing")
            members[0].kill()
            members[0].wait(10)
            members[0] = group_consumer_process(bootstrap, "g", "jobs", outputs[0])
            for _ in range(2):
                coordinator = admin.describe_group("g")["coordinator"]
                before = check_commits(admin)
                cluster.kill_node(coordinator)
                wait_until(lambda: check_commits(admin) > before + 20, 60, "commits after the coordinator's kill")
                cluster.start_node(coordinator)
                cluster.wait_for_rejoin(coordinator, 60)
            members[1].kill()
            members[1].wait(10)
            members[1] = group_consumer_process(bootstrap, "g", "jobs", outputs[1])
            stop_producing.set()
            assert produced.wait(120), "the producer did not finish"
            assert not errors, errors
            total = sent[0]
            wait_until(lambda: check_commits(admin) == total, 90, f"all {total} records committed")
    finally:
        for member in members:
            member.kill()
            member.wait(10)
    values = []
    for out in outputs:
        for line in out.read_text().splitlines():
            try:
                values.append(int(json.loads(line)["value"]))
            except ValueError:
                continue
    assert set(values) == set(range(total)), f"never processed: {sorted(set(range(total)) - set(values))[:20]}"


def test_offsets_of_an_empty_group_expire_after_the_retention_while_an_active_groups_stay(make_cluster):
    """offsets.retention.minutes is at least a minute (Kafka's unit): the check runs every 200 ms
    here, so the empty group's offsets go about a minute after its last commit."""
    cluster = make_cluster(
        extra_config={**GROUP_CONFIG, "offsets.retention.minutes": 1, "offsets.retention.check.interval.ms": 200}
    )
    cluster.start()
    cluster.wait_for_brokers(3)
    bootstrap = cluster.bootstrap_servers
    both = {TopicPartition("ret", p) for p in (0, 1)}
    with cluster.admin(timeout_ms=15000) as admin:
        admin.create_topic("ret", 2, 3)
        produce(bootstrap, "ret", 10)
        # The active group commits once, before the idle group, and then only heartbeats: its
        # commit is older than the idle group's, so only its members keep its offsets.
        active = Consumer(bootstrap, group_id="busy", enable_auto_commit=False)
        active.subscribe(["ret"])
        stop = threading.Event()

        def keep_polling() -> None:
            while not stop.is_set():
                active.poll(100)

        poller = threading.Thread(target=keep_polling, daemon=True)
        try:
            wait_until(lambda: active.poll(100) is not None and active.assignment() == both, 60, "busy owning both")
            active.commit({tp: 5 for tp in both})
            poller.start()
            admin.alter_group_offsets("idle", {("ret", 0): 3, ("ret", 1): 4})
            assert admin.list_group_offsets("idle") == {("ret", 0): 3, ("ret", 1): 4}
            wait_until(lambda: admin.list_group_offsets("idle") == {}, 150, "the idle group's offsets expiring")
            assert admin.list_group_offsets("busy") == {("ret", 0): 5, ("ret", 1): 5}
            listed = json.loads(cli("groups", "list", "--output", "json", "--bootstrap-server", bootstrap).stdout)
            assert [row["group"] for row in listed] == ["busy"], listed
            described = cli(
                "groups", "describe", "--group", "busy", "--output", "json", "--bootstrap-server", bootstrap
            )
            assert sorted(row["current_offset"] for row in json.loads(described.stdout)) == [5, 5], described.stdout
        finally:
            stop.set()
            if poller.is_alive():
                poller.join(10)
            active.close()


def test_a_lone_commit_does_not_wait_for_the_coordinators_linger(make_cluster):
    """group.coordinator.append.linger.ms batches writes only behind an append still awaiting
    replication: with none out a commit goes at once. The linger here is a minute, so under the
    old rule (every append waited out the linger first) not one of these commits would be answered
    within the client's 30 s commit timeout."""
    cluster = make_cluster(extra_config={**GROUP_CONFIG, "group.coordinator.append.linger.ms": 60_000})
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("lone-commits", 1, 3)
    tp = TopicPartition("lone-commits", 0)
    consumer = Consumer(cluster.bootstrap_servers, group_id="lone", enable_auto_commit=False)
    try:
        consumer.assign([tp])
        for offset in range(1, 6):  # one at a time: never an append in flight when the next comes
            consumer.commit({tp: offset})
        assert consumer.committed([tp]) == {tp: 5}
    finally:
        consumer.close()
