"""An acks=all idempotent producer for the container tests that remembers, per record, when it
was sent and when it was acknowledged (for the failover and unavailability figures), and a
read-back of a whole topic for chaos.checker.check."""

from __future__ import annotations

import threading
import time

from chaos.checker import Ack, make_value
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.errors import RaftlogError


class TimedWorkload:
    """Sends make_value(0), make_value(1), ... to partition i % partitions at a steady rate."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, records_per_s: int = 200):
        self._producer = Producer(
            bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            delivery_timeout_ms=120_000,
            request_timeout_ms=3_000,
            retry_backoff_ms=50,
        )
        self._topic = topic
        self._partitions = partitions
        self._interval_s = 1.0 / records_per_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acks: list[Ack] = []
        self.timings: list[tuple[int, float, float]] = []  # (partition, sent at, acknowledged at), monotonic s
        self.failures: dict[str, int] = {}
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="container-workload", daemon=True)

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
            return
        with self._lock:
            self.acks.append(Ack(metadata.partition, metadata.offset, value))
            self.timings.append((partition, sent_at, acknowledged_at))

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.acks)

    def wait_for_progress(self, more: int, timeout_s: float) -> None:
        target = self.acknowledged() + more
        deadline = time.monotonic() + timeout_s
        while self.acknowledged() < target:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the workload made no progress for {timeout_s}s "
                    f"({self.acknowledged()} acknowledged, failures {self.failures})"
                )
            time.sleep(0.05)

    def first_ack_of_a_send_after(self, moment: float, partition: int) -> float | None:
        """When the first record sent to `partition` at or after `moment` was acknowledged."""
        with self._lock:
            after = [(sent, acked) for p, sent, acked in self.timings if p == partition and sent >= moment]
        return min(after)[1] if after else None

    def longest_ack_latency_s(self, since: float) -> float:
        with self._lock:
            return max((acked - sent for _, sent, acked in self.timings if sent >= since), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._producer.flush(150)
        self._producer.close(30)

    def abort(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._producer.close(1)
        except Exception:  # noqa: BLE001 - a failed test's own error matters more than a slow close
            pass


def read_topic(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = 60
) -> dict[int, list[tuple[int, bytes]]]:
    """partition -> [(offset, value)], everything up to each partition's high watermark now."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    served: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    with Consumer(bootstrap, auto_offset_reset="earliest", max_poll_records=5000) as consumer:
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} up to {ends} within {timeout_s}s")
            for record in consumer.poll(timeout_ms=500):
                served[record.partition].append((record.offset, record.value))
    return served
