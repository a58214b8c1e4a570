"""The chaos workload: an idempotent acks=all producer that remembers every acknowledgement,
a consumer group that consumes and commits throughout, and the two ways of reading back
(through a consumer, and from the replicas' files). On a secure cluster each client gets the
workload user's settings (`security`: TLS files, as Producer and Consumer take them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from chaos.checker import Ack, make_value
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.errors import RaftlogError

FLUSH_TIMEOUT_S = 150.0


class Workload:
    """Sends make_value(0), make_value(1), ... round-robin over the partitions at a steady rate
    from a thread, until stopped. Each partition thus gets increasing sequences."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        records_per_s: int = 400,
        security: Mapping[str, str | None] | None = None,
    ):
        self._producer = Producer(
            bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            delivery_timeout_ms=120_000,
            request_timeout_ms=3_000,
            retry_backoff_ms=50,
            **(security or {}),
        )
        self._topic = topic
        self._partitions = partitions
        self._interval_s = 1.0 / records_per_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acks: list[Ack] = []
        # (partition, sent at, acknowledged at), monotonic s: the report's latencies, the container
        # tests' failover and unavailability figures
        self.timings: list[tuple[int, float, float]] = []
        self.failures: dict[str, int] = {}
        # The first failure of each reason, as the producer gave it (the report's clue to a cause).
        self.first_failures: dict[str, str] = {}
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="chaos-workload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            value, partition = make_value(self.sent), self.sent % self._partitions
            sent_at = time.monotonic()
            future = self._producer.send(self._topic, value, partition=partition)
            future.add_done_callback(lambda f, v=value, p=partition, t=sent_at: self._done(f, v, p, t))
            self.sent += 1
            next_send += self._interval_s
            self._stop.wait(max(0.0, next_send - time.monotonic()))

    def _done(self, future, value: bytes, partition: int, sent_at: float) -> None:
        acknowledged_at = time.monotonic()
        try:
            metadata = future.result(0)
        except RaftlogError as exc:
            with self._lock:
                self.failures[exc.reason] = self.failures.get(exc.reason, 0) + 1
                self.first_failures.setdefault(exc.reason, f"partition {partition}: {exc}")
            return
        with self._lock:
            self.acks.append(Ack(metadata.partition, metadata.offset, value))
            self.timings.append((partition, sent_at, acknowledged_at))

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.acks)

    @property
    def latencies(self) -> list[tuple[float, float]]:
        """(acknowledged at, latency from send to acknowledgement) of every acknowledged record."""
        with self._lock:
            return [(acked, acked - sent) for _, sent, acked in self.timings]

    def first_ack_of_a_send_after(self, moment: float, partition: int) -> float | None:
        """When the first record sent to `partition` at or after `moment` was acknowledged."""
        with self._lock:
            after = [(sent, acked) for p, sent, acked in self.timings if p == partition and sent >= moment]
        return min(after)[1] if after else None

    def longest_ack_latency_s(self, since: float) -> float:
        """The longest send-to-acknowledgement time of the records sent at or after `since`."""
        with self._lock:
            return max((acked - sent for _, sent, acked in self.timings if sent >= since), default=0.0)

    def wait_for_progress(self, more: int, timeout_s: float) -> None:
        """Blocks until `more` further records have been acknowledged."""
        target = self.acknowledged() + more
        deadline = time.monotonic() + timeout_s
        while self.acknowledged() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the workload made no progress for {timeout_s}s "
                    f"({self.acknowledged()} acknowledged, failures {self.failures})"
                )
            time.sleep(0.05)

    def unfinished(self) -> int:
        """Records sent that have been neither acknowledged nor failed (yet)."""
        with self._lock:
            return self.sent - len(self.acks) - sum(self.failures.values())

    def stop(self, timeout_s: float = FLUSH_TIMEOUT_S) -> int:
        """Stops sending and waits, up to timeout_s, until every record sent has been
        acknowledged or has failed; returns how many were still unanswered when it gave up
        (their fate is unknown: the checker counts them with the unacknowledged)."""
        self._stop.set()
        self._thread.join()
        try:
            self._producer.flush(timeout_s)
            self._producer.close(30)
        except TimeoutError:
            self.abort()
        return self.unfinished()

    def abort(self) -> None:
        """Stops sending and gives up on what is still in flight (after a failed run)."""
        self._stop.set()
        self._thread.join()
        try:
            self._producer.close(1)
        except Exception:  # noqa: BLE001 - a timed-out close must not hide the run's own failure
            pass


class LiveReader:
    """A consumer reading the topic from the start while the faults go on, remembering what it
    was served: every one of those records must still be there at the end."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, security: Mapping[str, str | None] | None = None):
        self._consumer = Consumer(
            bootstrap,
            auto_offset_reset="earliest",
            max_poll_records=5000,
            request_timeout_ms=5_000,
            **(security or {}),
        )
        self._consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        self._stop = threading.Event()
        self.read: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self.errors: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="chaos-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                records = self._consumer.poll(timeout_ms=200)
            except RaftlogError as exc:  # e.g. no leader for a moment: try again
                self.errors[exc.reason] = self.errors.get(exc.reason, 0) + 1
                self._stop.wait(0.1)
                continue
            self.read += [(r.partition, r.offset, r.value) for r in records]

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._consumer.close()


class GroupReaders:
    """A consumer group of `members` consumers (subscribe, manual sync commits) consuming the
    topic while the faults go on: each one polls, remembers what it processed, then commits the
    offsets after it and remembers each commit that succeeded (per partition, in order)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        members: int = 2,
        security: Mapping[str, str | None] | None = None,
    ):
        self._bootstrap = bootstrap
        self._security = dict(security or {})
        self._topic = topic
        self._group_id = group_id
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.processed: list[tuple[int, int, bytes]] = []  # (partition, offset, value)
        self._processed_values: set[bytes] = set()
        self.commits: dict[int, list[int]] = {}  # partition -> committed offsets, in order
        self.errors: dict[str, int] = {}
        self._threads = [
            threading.Thread(target=self._run, name=f"chaos-group-{i}", daemon=True) for i in range(members)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _error(self, reason: str) -> None:
        with self._lock:
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def _run(self) -> None:
        consumer = Consumer(
            self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
            request_timeout_ms=5_000,
            **self._security,
        )
        try:
            consumer.subscribe([self._topic])
            while not self._stop.is_set():
                try:
                    records = consumer.poll(timeout_ms=200)
                except RaftlogError as exc:  # e.g. no leader or coordinator for a moment: try again
                    self._error(exc.reason)
                    self._stop.wait(0.1)
                    continue
                if not records:
                    continue
                offsets: dict[TopicPartition, int] = {}
                with self._lock:
                    for r in records:
                        self.processed.append((r.partition, r.offset, r.value))
                        self._processed_values.add(r.value)
                        tp = TopicPartition(r.topic, r.partition)
                        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
                try:
                    consumer.commit(offsets)
                except RaftlogError as exc:  # e.g. a rebalance took the partition: it is read again
                    self._error(f"commit {exc.reason}")
                    continue
                with self._lock:
                    for tp, offset in offsets.items():
                        self.commits.setdefault(tp.partition, []).append(offset)
        except Exception as exc:  # noqa: BLE001 - counted: a consumer that died shows as records not consumed
            self._error(f"{type(exc).__name__}: {exc}")
        finally:
            try:
                consumer.close()
            except Exception as exc:  # noqa: BLE001 - a close that fails must not hide the counts
                self._error(f"close {type(exc).__name__}")

    def wait_caught_up(self, values: list[bytes], timeout_s: float) -> bool:
        """Waits, up to timeout_s, until the group has processed every one of values."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                missing = any(value not in self._processed_values for value in values)
            if not missing:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(30)


def read_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    timeout_s: float = 60,
    security: Mapping[str, str | None] | None = None,
) -> tuple[dict[int, list[tuple[int, bytes]]], str | None]:
    """(partition -> [(offset, value)], None): everything up to each partition's high watermark
    now; or, if that could not be read within timeout_s, what was read and why it stopped."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    served: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + timeout_s
    ends: dict = {}
    try:
        with Consumer(bootstrap, auto_offset_reset="earliest", max_poll_records=5000, **(security or {})) as consumer:
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    return served, f"could not read {topic} up to {ends} within {timeout_s}s"
                try:
                    records = consumer.poll(timeout_ms=500)
                except RaftlogError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)  # e.g. no leader for a moment: try again until the deadline
                    continue
                for record in records:
                    served[record.partition].append((record.offset, record.value))
    except RaftlogError as exc:
        return served, f"reading {topic} back failed ({exc.reason}: {exc}); read up to {ends or 'unknown ends'}"
    return served, None


def stored_records(
    partition_dir: Path, on_corrupt: Callable[[int, Exception], None] | None = None
) -> list[tuple[int, bytes]]:
    """(offset, value) of every record in a partition directory, read from its files (the node
    must be stopped). A batch that fails its checks raises, unless on_corrupt is given: then it
    is reported there (with its base offset) and skipped, so its records are missing."""
    from raftlog.log import PartitionLog  # noqa: PLC0415 - only the offline reader needs it
    from raftlog.log.errors import LogError  # noqa: PLC0415
    from raftlog.log.record_batch import HEADER_SIZE, LOG_OVERHEAD, decode_batch, read_header  # noqa: PLC0415

    log = PartitionLog(partition_dir)
    records: list[tuple[int, bytes]] = []
    offset = log.log_start_offset
    try:
        while offset < log.log_end_offset:
            data = log.read(offset, 4 << 20)
            if not data:
                break
            position = 0
            while len(data) - position >= HEADER_SIZE:
                size = int.from_bytes(data[position + 8 : position + 12], "big", signed=True) + LOG_OVERHEAD
                if position + size > len(data):
                    break  # cut by the read's size: the next read starts with it
                try:
                    header, batch = decode_batch(data, position)
                except LogError as exc:
                    if on_corrupt is None:
                        raise
                    header = read_header(data, position, check_crc=False)  # a damaged header raises
                    on_corrupt(header.base_offset, exc)
                    batch = []
                records += [(r.offset, r.value) for r in batch if r.offset >= offset]
                offset = header.last_offset + 1
                position += header.size
            if position == 0:
                break  # not even one whole batch: nothing more to read
    finally:
        log.close()
    return records
