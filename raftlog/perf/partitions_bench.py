"""`raftlog perf partitions`: what a topic of many partitions costs the cluster.

It creates one topic of N partitions (one CreateTopics, then CreatePartitions in steps of
MAX_PARTITIONS_CREATED_PER_REQUEST), and measures:

- the time until every partition has a leader in the metadata, and until every leader serves
  it (a ListOffsets of every partition answered without error: the leader has opened its log);
- the open files of each node process (`/proc/PID/fd`) once served, and again after an idle
  pause (only for the cluster it starts itself, or for the pids given);
- acks=all produce latency to another one-partition topic at a fixed rate throughout, from each
  record's scheduled time (so a stall is not hidden: coordinated omission), split by phase
  (creating, idle, deleting); a record not acknowledged is counted as an error;
- the time to delete the topic: until the metadata no longer has it and, for its own cluster,
  until no node holds a directory of it any more.

By default it starts its own three-node cluster; with a bootstrap server it uses that one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from raftlog.client.admin import Admin
from raftlog.client.producer import AsyncProducer
from raftlog.cluster.local import LocalCluster
from raftlog.errors import RaftlogError
from raftlog.limits import MAX_PARTITIONS_CREATED_PER_REQUEST
from raftlog.perf.latency_bench import ensure_topic
from raftlog.perf.stats import percentile

TOPIC = "perf-partitions"
LATENCY_TOPIC = "perf-partitions-latency"
PHASES = ("create", "idle", "delete")
READY_TIMEOUT_S = 1800.0
POLL_S = 1.0  # each poll reads the metadata of every partition: not too often
ADMIN_TIMEOUT_MS = 60_000


class LatencyRecorder:
    """acks=all writes at a fixed rate in a process of its own (so the bench's admin calls, which
    decode the metadata of every partition, do not hold up its sends); each latency goes to the
    phase that was current when the record was due."""

    def __init__(self, bootstrap: str, rate: int, security: dict):
        context = multiprocessing.get_context("spawn")
        self._phase = context.Value("i", 0)
        self._stop = context.Event()
        self._results = context.Queue()
        self._process = context.Process(
            target=_record_latencies,
            args=(bootstrap, rate, security, self._phase, self._stop, self._results),
            name="perf-partitions-producer",
            daemon=True,
        )
        self.outcome: dict | None = None

    def start(self) -> None:
        self._process.start()

    def set_phase(self, phase: str) -> None:
        self._phase.value = PHASES.index(phase)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.outcome = self._results.get(timeout=120)
        finally:
            self._process.join(30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    def summary(self) -> dict:
        if self.outcome is None or "failure" in self.outcome:
            raise RuntimeError(f"the latency producer failed: {(self.outcome or {}).get('failure')}")
        latencies, errors = self.outcome["latencies_ms"], self.outcome["errors"]
        out = {}
        for phase in PHASES:
            lat = latencies[phase]
            out[phase] = {
                "records": len(lat),
                "errors": errors[phase],
                "p50_ms": round(percentile(lat, 0.50), 1),
                "p99_ms": round(percentile(lat, 0.99), 1),
                "max_ms": round(max(lat, default=0.0), 1),
            }
        return out


def _record_latencies(bootstrap: str, rate: int, security: dict, phase, stop, results) -> None:
    """The producer process: writes until stop is set, then puts its figures on results."""
    latencies: dict[str, list[float]] = {p: [] for p in PHASES}
    errors = dict.fromkeys(PHASES, 0)

    def done(due: float, phase_name: str):
        def record(future) -> None:
            finished = time.perf_counter()
            try:
                future.result()
            except RaftlogError:
                errors[phase_name] += 1
                return
            latencies[phase_name].append((finished - due) * 1000.0)

        return record

    async def produce() -> None:
        producer = AsyncProducer(bootstrap, acks="all", **security)
        payload = os.urandom(100)
        try:
            await producer.start()
            started = time.perf_counter()
            i = 0
            while not stop.is_set():
                due = started + i / rate
                i += 1
                ahead_s = due - time.perf_counter()
                if ahead_s > 0:
                    await asyncio.sleep(ahead_s)
                future = await producer.send(LATENCY_TOPIC, payload, partition=0)
                future.add_done_callback(done(due, PHASES[phase.value]))
            await producer.flush()
        finally:
            await producer.close()

    try:
        asyncio.run(produce())
        results.put({"latencies_ms": latencies, "errors": errors})
    except BaseException as exc:  # noqa: BLE001 - reported by the bench
        results.put({"failure": f"{type(exc).__name__}: {exc}"})


def open_files(pids: dict[int, int]) -> dict[int, int | None]:
    """node id -> open file descriptors of its process (None when it cannot be read)."""
    counts: dict[int, int | None] = {}
    for node_id, pid in pids.items():
        try:
            counts[node_id] = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            counts[node_id] = None
    return counts


def _create(admin: Admin, partitions: int, replication_factor: int, progress) -> None:
    step = MAX_PARTITIONS_CREATED_PER_REQUEST
    admin.create_topic(TOPIC, partitions=min(partitions, step), replication_factor=replication_factor)
    total = min(partitions, step)
    while total < partitions:
        total = min(partitions, total + step)
        admin.create_partitions(TOPIC, total)
        progress(f"{TOPIC}: {total} partitions requested")


def _wait_for_leaders(admin: Admin, partitions: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        topics = [t for t in admin.metadata([TOPIC]).topics if t.name == TOPIC and not t.error_reason]
        if topics and len(topics[0].partitions) == partitions and all(p.leader >= 0 for p in topics[0].partitions):
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"{TOPIC}: not every partition has a leader after {READY_TIMEOUT_S:.0f} s")


def _wait_until_served(admin: Admin, partitions: int, deadline: float, progress) -> int:
    """Returns how many partitions are served (all of them, unless the deadline came first)."""
    waiting = [(TOPIC, p) for p in range(partitions)]
    while waiting and time.monotonic() < deadline:
        try:
            answers = admin.list_offsets_each(waiting, timestamp=-1)
        except RaftlogError as exc:  # a node too busy to answer in time: counted as not yet
            progress(f"{TOPIC}: ListOffsets failed: {exc}")
            continue
        waiting = [tp for tp in waiting if isinstance(answers.get(tp), RaftlogError) or tp not in answers]
        if waiting:
            progress(f"{TOPIC}: {partitions - len(waiting)} of {partitions} partitions served by their leaders")
            time.sleep(POLL_S)
    return partitions - len(waiting)


def _remaining_replicas(data_dirs: list[Path]) -> int:
    """Partition directories of the topic still on the nodes' disks (`<topic>-<n>`)."""
    return sum(1 for d in data_dirs for path in d.glob(f"{TOPIC}-*") if path.name[len(TOPIC) + 1 :].isdigit())


def _wait_for_deletion(admin: Admin, data_dirs: list[Path], deadline: float, progress) -> None:
    while time.monotonic() < deadline:
        gone = not any(t.name == TOPIC and not t.error_reason for t in admin.metadata([TOPIC]).topics)
        remaining = _remaining_replicas(data_dirs)
        if gone and not remaining:
            return
        progress(f"{TOPIC}: {'gone from' if gone else 'still in'} the metadata, {remaining} replicas left on disk")
        time.sleep(POLL_S)
    raise TimeoutError(f"{TOPIC}: still present {READY_TIMEOUT_S:.0f} s after its deletion")


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(
    bootstrap: str,
    partitions: int,
    replication_factor: int,
    idle_s: float,
    rate: int,
    pids: dict[int, int],
    data_dirs: list[Path],
    security: dict,
    served_timeout_s: float = READY_TIMEOUT_S,
    progress=print,
) -> dict:
    """served_timeout_s: how long to wait for every partition to be served before going on
    (the figures then say how many were)."""
    with Admin(bootstrap, timeout_ms=ADMIN_TIMEOUT_MS, **security) as admin:
        ensure_topic(admin, LATENCY_TOPIC, replication_factor)
        files_before = open_files(pids)
        recorder = LatencyRecorder(bootstrap, rate, security)
        recorder.start()
        load_before = _load_average()
        try:
            time.sleep(3.0)  # the producer process has started, with its metadata and connections
            started = time.monotonic()
            deadline = started + READY_TIMEOUT_S
            _create(admin, partitions, replication_factor, progress)
            requested_s = time.monotonic() - started
            _wait_for_leaders(admin, partitions, deadline)
            leaders_s = time.monotonic() - started
            progress(f"{TOPIC}: every partition has a leader after {leaders_s:.1f} s")
            served = _wait_until_served(admin, partitions, started + served_timeout_s, progress)
            served_s = time.monotonic() - started
            progress(f"{TOPIC}: {served} of {partitions} partitions served after {served_s:.1f} s")
            files_created = open_files(pids)
            load_created = _load_average()
            recorder.set_phase("idle")
            time.sleep(idle_s)
            files_idle = open_files(pids)
            recorder.set_phase("delete")
            started = time.monotonic()
            admin.delete_topic(TOPIC)
            _wait_for_deletion(admin, data_dirs, started + READY_TIMEOUT_S, progress)
            delete_s = time.monotonic() - started
            progress(f"{TOPIC}: deleted after {delete_s:.1f} s")
            time.sleep(1.0)  # records due during the deletion are acknowledged
        finally:
            recorder.stop()
    return {
        "partitions": partitions,
        "replication_factor": replication_factor,
        "create_requests_s": round(requested_s, 2),
        "create_leaders_s": round(leaders_s, 2),
        "create_served_s": round(served_s, 2),
        "served_partitions": served,
        "delete_s": round(delete_s, 2),
        "open_files_before": files_before,
        "open_files_created": files_created,
        "open_files_idle": files_idle,
        "idle_s": idle_s,
        "produce_rate": rate,
        "produce_latency": recorder.summary(),
        "load_average_before": load_before,
        "load_average_created": load_created,
        "load_average_after": _load_average(),
    }


def run_partitions_bench(
    partitions: int,
    replication_factor: int,
    idle_s: float,
    rate: int,
    base_port: int,
    bootstrap: str | None = None,
    pids: dict[int, int] | None = None,
    security: dict | None = None,
    extra_config: dict[str, object] | None = None,
    work_dir: Path | None = None,
    served_timeout_s: float = READY_TIMEOUT_S,
    progress=print,
) -> dict:
    """On the cluster at bootstrap, or on a three-node cluster of its own (ports from base_port,
    its data in a temporary directory under work_dir)."""
    if bootstrap is not None:
        return measure(
            bootstrap,
            partitions,
            replication_factor,
            idle_s,
            rate,
            pids or {},
            [],
            security or {},
            served_timeout_s,
            progress,
        )
    with tempfile.TemporaryDirectory(prefix="raftlog-perf-partitions-", dir=work_dir) as tmp:
        cluster = LocalCluster(Path(tmp), nodes=3, base_port=base_port, metrics_base_port=0, extra_config=extra_config)
        try:
            cluster.start()
            cluster.wait_for_brokers(3, timeout_s=60)
            own_pids = {node_id: process.pid for node_id, process in cluster.processes.items()}
            data_dirs = [spec.partitions_dir for spec in cluster.specs.values()]
            return measure(
                cluster.bootstrap_servers,
                partitions,
                replication_factor,
                idle_s,
                rate,
                own_pids,
                data_dirs,
                {},
                served_timeout_s=served_timeout_s,
                progress=progress,
            )
        finally:
            cluster.stop()
