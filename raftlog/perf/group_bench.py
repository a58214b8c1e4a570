"""`raftlog perf group`: consumer-group figures on a local three-node cluster of its own.

1. Joins: `members` members consume a `partitions`-partition topic while a producer writes every
   partition steadily. A new member joins `joins` times (and leaves after each); for each join:
   the time from subscribe() until its first record, and the pause of existing members on the
   partitions they kept across the join: the longest end-to-end delay (received minus produced)
   of a record on such a partition during the join, minus the longest delay on the same
   partitions in an equally long quiet period right after it (what the pipeline costs with no
   pause at all).
2. Commits: a client outside the group protocol commits single-partition offsets at `commit_rate`
   per second for a few seconds, concurrently: commits/s reached and latency percentiles.
3. Throughput: one consumer reads the same records with assigned partitions, then as the only
   member of a group; records/s of each, from assign() or from the group's assignment (on_assign).
4. Coordinator failover: commits one at a time, kill -9 of the coordinator's broker, and the time
   from the kill until a commit sent after it succeeds.

Each member, each of the committing clients and the steady producer is a process of its own
(spawned; driven over a pipe): measured on one event loop, ten members,
the producer and a thousand commits a second saturated that one process (profiled: 100% of a
core in gRPC calls) and its backlog, not the group protocol, was what the figures showed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from raftlog.client.admin import Admin
from raftlog.client.consumer import AsyncConsumer, TopicPartition
from raftlog.client.producer import AsyncProducer
from raftlog.cluster.local import LocalCluster
from raftlog.errors import RaftlogError
from raftlog.perf.client_bench import run_consume
from raftlog.perf.stats import median, percentile

TOPIC = "perf-group"
THROUGHPUT_TOPIC = "perf-group-throughput"
GROUP = "perf-group"
COMMIT_GROUP = "perf-group-commits"
STABLE_TIMEOUT_S = 30.0


@dataclass
class GroupBenchResult:
    join_to_first_record_s: list[float] = field(default_factory=list)
    kept_partition_max_gap_ms: list[float] = field(default_factory=list)  # pause: delay above the baseline
    baseline_delay_ms: list[float] = field(default_factory=list)
    record_interval_ms: float = 0.0
    commits: int = 0
    commit_elapsed_s: float = 0.0
    commit_latencies_ms: list[float] = field(default_factory=list)
    assigned_records_per_sec: float = 0.0
    group_records_per_sec: float = 0.0
    coordinator_failover_s: float = 0.0

    def summary(self) -> dict:
        lat = self.commit_latencies_ms
        return {
            "joins": len(self.join_to_first_record_s),
            "join_to_first_record_p50_s": round(median(self.join_to_first_record_s), 3),
            "join_to_first_record_max_s": round(max(self.join_to_first_record_s, default=0.0), 3),
            "kept_partitions_longest_pause_ms": round(max(self.kept_partition_max_gap_ms, default=0.0), 1),
            "baseline_end_to_end_delay_ms_max": round(max(self.baseline_delay_ms, default=0.0), 1),
            "record_interval_per_partition_ms": round(self.record_interval_ms, 1),
            "commits_per_sec": round(self.commits / self.commit_elapsed_s, 1) if self.commit_elapsed_s else 0.0,
            "commit_p50_ms": round(percentile(lat, 0.50), 2),
            "commit_p99_ms": round(percentile(lat, 0.99), 2),
            "commit_max_ms": round(max(lat, default=0.0), 2),
            "assigned_consume_records_per_sec": round(self.assigned_records_per_sec, 1),
            "group_consume_records_per_sec": round(self.group_records_per_sec, 1),
            "group_vs_assigned": round(self.group_records_per_sec / self.assigned_records_per_sec, 3)
            if self.assigned_records_per_sec
            else 0.0,
            "coordinator_failover_s": round(self.coordinator_failover_s, 3),
        }


COMMITTER_PROCESSES = 4  # one client process commits a few hundred a second on this machine
REPORT_TIMEOUT_S = 30.0


class _Member:
    """A member polling in a task; records, per partition, the longest end-to-end delay of a
    record (received minus its timestamp) since the last reset."""

    def __init__(self, bootstrap: str):
        self.consumer = AsyncConsumer(
            bootstrap, group_id=GROUP, auto_offset_reset="latest", fetch_max_wait_ms=100, auto_commit_interval_ms=1000
        )
        self.max_delay_ms: dict[int, float] = {}
        self.joined_at: float | None = None  # wall clock: compared across processes
        self.first_record_at: float | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.joined_at = time.time()
        self.consumer.subscribe([TOPIC])
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            records = await self.consumer.poll(100)
            now_ms = time.time() * 1000.0
            if records and self.first_record_at is None:
                self.first_record_at = now_ms / 1000.0
            for record in records:
                delay = now_ms - record.timestamp
                if delay > self.max_delay_ms.get(record.partition, 0.0):
                    self.max_delay_ms[record.partition] = delay

    def reset(self) -> None:
        self.max_delay_ms = {}

    def owned(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.close()


def _member_process(bootstrap: str, conn: Connection) -> None:
    """One member in a process of its own, driven by commands over conn: start (join), reset,
    report (owned partitions, delays, join and first-record times), stop."""

    log_path = os.environ.get("RAFTLOG_PERF_GROUP_LOG")  # a step-by-step timeline of the hand-overs
    if log_path:
        logging.basicConfig(
            filename=log_path, level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(name)s %(message)s"
        )

    async def main() -> None:
        member = _Member(bootstrap)
        conn.send("ready")
        while True:
            while conn.poll():
                command = conn.recv()
                if command == "start":
                    member.start()
                elif command == "reset":
                    member.reset()
                elif command == "report":
                    conn.send((member.owned(), dict(member.max_delay_ms), member.joined_at, member.first_record_at))
                elif command == "stop":
                    await member.stop()
                    conn.send("stopped")
                    return
            await asyncio.sleep(0.01)

    asyncio.run(main())


@dataclass
class _Report:
    owned: set[int]
    max_delay_ms: dict[int, float]
    joined_at: float | None
    first_record_at: float | None


class _RemoteMember:
    """The bench's handle on a member process: members, the producer and the bench do not share
    an event loop (or a CPU), so one falling behind does not show up as the others' pause."""

    def __init__(self, bootstrap: str):
        self._conn, child = mp.get_context("spawn").Pipe()
        self._process = mp.get_context("spawn").Process(target=_member_process, args=(bootstrap, child), daemon=True)
        self._process.start()
        child.close()

    async def _receive(self):
        if not await asyncio.to_thread(self._conn.poll, REPORT_TIMEOUT_S):
            raise TimeoutError(f"member process {self._process.pid} did not answer within {REPORT_TIMEOUT_S}s")
        return self._conn.recv()

    async def ready(self) -> None:
        assert await self._receive() == "ready"

    def start(self) -> None:
        self._conn.send("start")

    def reset(self) -> None:
        self._conn.send("reset")

    async def report(self) -> _Report:
        self._conn.send("report")
        return _Report(*await self._receive())

    async def stop(self) -> None:
        try:
            self._conn.send("stop")
            await self._receive()
        except (OSError, EOFError, TimeoutError):
            pass
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
            await asyncio.to_thread(self._process.join, 5)
        self._conn.close()


async def _new_members(bootstrap: str, count: int) -> list[_RemoteMember]:
    members = [_RemoteMember(bootstrap) for _ in range(count)]
    await asyncio.gather(*(m.ready() for m in members))
    return members


async def _steady_producer(bootstrap: str, partitions: int, rate: int, stop: asyncio.Event) -> None:
    producer = AsyncProducer(bootstrap, acks=1, linger_ms=5)
    started, sent = time.perf_counter(), 0
    try:
        while not stop.is_set():
            ahead_s = sent / rate - (time.perf_counter() - started)
            # Always yield: send() alone may never do.
            await asyncio.sleep(max(ahead_s, 0))
            await producer.send(TOPIC, b"x" * 32, partition=sent % partitions)
            sent += 1
    finally:
        await producer.close()


def _producer_process(bootstrap: str, partitions: int, rate: int, conn: Connection) -> None:
    """The steady producer in a process of its own, until "stop" comes over conn. It ran on the
    bench's loop, which polls every member's report every 20-50 ms exactly while a join is under
    way: a record's timestamp is taken when it is handed to the producer, so the producer falling
    behind then showed up as every member's pause."""

    async def main() -> None:
        stop = asyncio.Event()
        producing = asyncio.get_running_loop().create_task(_steady_producer(bootstrap, partitions, rate, stop))
        conn.send("ready")
        await asyncio.to_thread(conn.recv)
        stop.set()
        await producing

    asyncio.run(main())
    conn.send("stopped")


async def _until_balanced(members: list[_RemoteMember], partitions: int) -> list[_Report]:
    deadline = time.monotonic() + STABLE_TIMEOUT_S
    ceiling = -(-partitions // len(members))
    while True:
        reports = list(await asyncio.gather(*(m.report() for m in members)))
        owned = [r.owned for r in reports]
        if (
            sum(len(o) for o in owned) == partitions
            and all(len(o) <= ceiling for o in owned)
            and len(set().union(*owned)) == partitions
        ):
            return reports
        if time.monotonic() > deadline:
            listed = [sorted(o) for o in owned]
            raise TimeoutError(f"the group did not settle within {STABLE_TIMEOUT_S}s: members own {listed}")
        await asyncio.sleep(0.05)


QUIET_WINDOW_MAX_S = 10.0


def _longest_delay(reports: list[_Report], partitions: list[set[int]]) -> float:
    """The longest end-to-end delay any member saw on its given partitions."""
    return max((d for r, own in zip(reports, partitions) for p, d in r.max_delay_ms.items() if p in own), default=0.0)


async def _joins(
    bootstrap: str, members_count: int, partitions: int, joins: int, rate: int, result: GroupBenchResult, progress
) -> None:
    context = mp.get_context("spawn")
    producer_conn, child = context.Pipe()
    producer = context.Process(target=_producer_process, args=(bootstrap, partitions, rate, child), daemon=True)
    producer.start()
    child.close()
    if not await asyncio.to_thread(producer_conn.poll, REPORT_TIMEOUT_S * 2):
        raise TimeoutError("the producer process did not start")
    assert producer_conn.recv() == "ready"
    members = await _new_members(bootstrap, members_count)
    for member in members:
        member.start()
    try:
        await _until_balanced(members, partitions)
        await asyncio.sleep(1.0)
        result.record_interval_ms = 1000.0 * partitions / rate
        for i in range(joins):
            (newcomer,) = await _new_members(bootstrap, 1)  # started before the clock runs
            before = [r.owned for r in await _until_balanced(members, partitions)]
            await asyncio.sleep(0.5)  # settled after the last leave
            for m in members:
                m.reset()
            join_started = time.monotonic()
            newcomer.start()
            while True:
                joined = await newcomer.report()
                if joined.first_record_at is not None:
                    break
                if joined.joined_at is not None and time.time() - joined.joined_at > STABLE_TIMEOUT_S:
                    raise TimeoutError("the new member got no record")
                await asyncio.sleep(0.02)
            assert joined.joined_at is not None, "a member with a record has joined"
            result.join_to_first_record_s.append(joined.first_record_at - joined.joined_at)
            reports = await _until_balanced(members + [newcomer], partitions)
            await asyncio.sleep(0.3)
            reports = await asyncio.gather(*(m.report() for m in members))
            kept = [owned_before & r.owned for r, owned_before in zip(reports, before)]
            during_ms = _longest_delay(reports, kept)
            # The baseline: the same partitions over an equally long quiet stretch right after
            # (the group stable, the newcomer still in). A maximum over a few seconds of a noisy
            # delay exceeds one over a second with no pause at all; the baseline used to be one
            # quiet second before the join, so the pause figure grew with the join's length.
            window_s = min(time.monotonic() - join_started, QUIET_WINDOW_MAX_S)
            for m in members:
                m.reset()
            await asyncio.sleep(window_s)
            baseline_ms = _longest_delay(await asyncio.gather(*(m.report() for m in members)), kept)
            result.kept_partition_max_gap_ms.append(max(0.0, during_ms - baseline_ms))
            result.baseline_delay_ms.append(baseline_ms)
            progress(
                f"join {i + 1}: first record after {result.join_to_first_record_s[-1]:.3f} s; existing members "
                f"paused at most {result.kept_partition_max_gap_ms[-1]:.0f} ms on kept partitions "
                f"(longest end-to-end delay on them {during_ms:.0f} ms during the join, {baseline_ms:.0f} ms "
                f"in {window_s:.1f} s of quiet after it)"
            )
            await newcomer.stop()
            await _until_balanced(members, partitions)
    finally:
        try:
            producer_conn.send("stop")
            await asyncio.to_thread(producer_conn.poll, REPORT_TIMEOUT_S)
        except (OSError, EOFError):
            pass
        await asyncio.to_thread(producer.join, 10)
        if producer.is_alive():
            producer.kill()
            await asyncio.to_thread(producer.join, 5)
        producer_conn.close()
        await asyncio.gather(*(m.stop() for m in members))


def _committer_process(bootstrap: str, partition: int, rate: float, count: int, conn: Connection) -> None:
    """Commits `count` offsets of one partition at `rate` per second, from the wall time the
    bench sends once every committer is warm; sends back the latencies (ms) and the wall times
    of the first send and the last answer."""

    async def main() -> tuple[list[float], float, float]:
        consumer = AsyncConsumer(bootstrap, group_id=COMMIT_GROUP, enable_auto_commit=False)
        tp = TopicPartition(TOPIC, partition)
        consumer.assign([tp])
        await consumer.commit({tp: 0})  # warm: coordinator found, channel open
        conn.send("ready")
        start_at = await asyncio.to_thread(conn.recv)
        latencies: list[float] = []

        async def one(offset: int) -> None:
            started = time.perf_counter()
            await consumer.commit({tp: offset})
            latencies.append((time.perf_counter() - started) * 1000.0)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        first_sent = time.time()
        started = time.perf_counter()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(i / rate - (time.perf_counter() - started), 0))
            tasks.append(asyncio.get_running_loop().create_task(one(i + 1)))
        await asyncio.gather(*tasks)
        last_answered = time.time()
        await consumer.close()
        return latencies, first_sent, last_answered

    conn.send(asyncio.run(main()))


async def _commits(bootstrap: str, rate: int, seconds: float, result: GroupBenchResult) -> None:
    """Commits from COMMITTER_PROCESSES client processes (each its own partition): one Python
    client process cannot issue a thousand commit RPCs a second here (profiled: it saturated a
    core at ~300/s), so a single one measures its own queueing, not the coordinator."""
    processes = min(COMMITTER_PROCESSES, rate)
    total = int(rate * seconds)
    per_process = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    context = mp.get_context("spawn")
    pipes, workers = [], []
    for i, count in enumerate(per_process):
        parent, child = context.Pipe()
        worker = context.Process(
            target=_committer_process, args=(bootstrap, i, rate / processes, count, child), daemon=True
        )
        worker.start()
        child.close()
        pipes.append(parent)
        workers.append(worker)

    async def receive(parent: Connection, timeout_s: float):
        if not await asyncio.to_thread(parent.poll, timeout_s):
            raise TimeoutError("a committer process did not answer")
        return parent.recv()

    latencies: list[float] = []
    try:
        for parent in pipes:
            assert await receive(parent, REPORT_TIMEOUT_S * 2) == "ready"
        start_at = time.time() + 0.2
        for parent in pipes:
            parent.send(start_at)
        firsts, lasts = [], []
        for parent in pipes:
            got, first, last = await receive(parent, seconds + REPORT_TIMEOUT_S * 2)
            latencies.extend(got)
            firsts.append(first)
            lasts.append(last)
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.join, 10)
            if worker.is_alive():
                worker.kill()
    result.commits, result.commit_elapsed_s = len(latencies), max(max(lasts) - min(firsts), 1e-9)
    result.commit_latencies_ms = latencies


async def _throughput(bootstrap: str, records: int, partitions: int, result: GroupBenchResult) -> None:
    producer = AsyncProducer(bootstrap, acks=1, linger_ms=5, batch_size=262144)
    payload = os.urandom(100)
    for i in range(records):
        await producer.send(THROUGHPUT_TOPIC, payload, partition=i % partitions)
        if i % 1000 == 999:
            await asyncio.sleep(0)
    await producer.flush()
    await producer.close()
    # decode=True: the group member below decodes every record (poll), so the assigned consumer must too
    assigned = await run_consume(bootstrap, THROUGHPUT_TOPIC, records, list(range(partitions)), 10_000, decode=True)
    result.assigned_records_per_sec = assigned.records / assigned.elapsed_s
    consumer = AsyncConsumer(
        bootstrap, group_id=GROUP + "-throughput", auto_offset_reset="earliest", max_poll_records=100_000
    )
    # The clock starts once the group has handed the member its partitions (on_assign, before
    # their first fetch), as the assigned consumer's starts at assign(): joining the group is
    # the join figures' business, not consume throughput (it was counted here, and at ~100k
    # records/s a join of a few hundred ms under load halved the group's figure).
    assigned_at: list[float] = []
    consumer.subscribe([THROUGHPUT_TOPIC], on_assign=lambda tps: assigned_at.append(time.perf_counter()))
    subscribed = time.perf_counter()
    got = 0
    try:
        while got < records and time.perf_counter() - subscribed < 120:
            got += len(await consumer.poll(500))
    finally:
        elapsed_s = time.perf_counter() - (assigned_at[0] if assigned_at else subscribed)
        await consumer.close()
    result.group_records_per_sec = got / elapsed_s


async def _failover(cluster: LocalCluster, bootstrap: str, result: GroupBenchResult) -> None:
    consumer = AsyncConsumer(bootstrap, group_id=COMMIT_GROUP, enable_auto_commit=False)
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    await consumer.commit({tp: 1})

    def coordinator() -> int:
        with Admin(bootstrap) as admin:
            return admin.describe_group(COMMIT_GROUP)["coordinator"]

    victim = await asyncio.to_thread(coordinator)
    cluster.signal_node(victim, signal.SIGKILL)
    killed_at = time.perf_counter()
    offset = 2
    while True:
        try:
            await consumer.commit({tp: offset})
            break
        except RaftlogError:
            if time.perf_counter() - killed_at > STABLE_TIMEOUT_S:
                raise
            await asyncio.sleep(0.01)
    result.coordinator_failover_s = time.perf_counter() - killed_at
    await consumer.close()


def run_group_bench(
    members: int,
    partitions: int,
    joins: int,
    rate: int,
    commit_rate: int,
    commit_seconds: float,
    throughput_records: int,
    base_port: int,
    progress=print,
) -> GroupBenchResult:
    result = GroupBenchResult()
    with tempfile.TemporaryDirectory(prefix="raftlog-perf-group-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=3, base_port=base_port, metrics_base_port=0)
        try:
            cluster.start()
            cluster.wait_for_leader(timeout_s=60)
            cluster.wait_for_brokers(3, timeout_s=60)
            with cluster.admin(timeout_ms=30_000) as admin:
                admin.create_topic(TOPIC, partitions=partitions, replication_factor=3)
                admin.create_topic(THROUGHPUT_TOPIC, partitions=12, replication_factor=3)
            bootstrap = cluster.bootstrap_servers
            progress(f"cluster up on {bootstrap}")

            async def bench() -> None:
                await _joins(bootstrap, members, partitions, joins, rate, result, progress)
                await _commits(bootstrap, commit_rate, commit_seconds, result)
                progress(
                    f"commits: {result.summary()['commits_per_sec']}/s, p99 {result.summary()['commit_p99_ms']} ms"
                )
                await _throughput(bootstrap, throughput_records, 12, result)
                progress(
                    f"consume: assigned {result.assigned_records_per_sec:.0f} records/s, "
                    f"group {result.group_records_per_sec:.0f} records/s"
                )
                await _failover(cluster, bootstrap, result)
                progress(f"coordinator kill -9 -> commits again after {result.coordinator_failover_s:.3f} s")

            asyncio.run(bench())
            return result
        finally:
            cluster.stop()
