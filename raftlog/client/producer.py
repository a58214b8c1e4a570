"""Producer and AsyncProducer, shaped like Kafka's producer.

Records go into a thread-safe accumulator: a queue of batches per partition, the last one
taking records until it holds batch_size bytes. A sender task on an asyncio loop takes a
partition's oldest batch once it is full, or has waited linger_ms, or nothing of its partition
is in flight (then there is no answer to batch behind: a lone record goes at once), and the
partition has an in-flight slot (up to max_in_flight batches per partition are out at once), encodes it
(RecordBatch v2, with the producer id and sequence when idempotent) and sends the batches
drained together for one leader in one Produce request. Because batches wait in the
accumulator, not in the sender, a backlog (a stalled leader) goes out in full batches.
A failed batch is retried on its own (same sequence, so the broker drops duplicates) until
delivery_timeout_ms. With idempotence, OUT_OF_ORDER_SEQUENCE while an earlier batch of the
partition is still being retried just means "wait for it", so order holds; with none out it may
come from a broker that has not learned it no longer leads, and is retried (fresh metadata) too.
Once a batch has failed for good, the broker would find every later sequence of its partition out
of order: those already out fail as well, and the partition's next batch starts a new producer
epoch at sequence 0 (Kafka's KIP-360 epoch bump, done locally by an idempotent producer).

Records not yet acknowledged may take buffer_memory bytes; beyond that send() waits up to
max_block_ms for room, then fails with REQUEST_TIMED_OUT (Kafka's buffer.memory, max.block.ms).

Each record's future points at its batch's result, so a send costs no thread hop and no
per-record future: ``Producer.send(...).result()`` blocks, ``await fut`` works in asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from raftlog.channels import error_from_rpc
from raftlog.client import records as record_codec
from raftlog.client.background import BackgroundLoop
from raftlog.client.cluster_metadata import ClusterMetadata
from raftlog.client.partitioner import StickyPartitioner, partition_for_key
from raftlog.client.pipelined import PRODUCE
from raftlog.errors import Errors, RaftlogError
from raftlog.limits import PRODUCE_RESPONSE_MARGIN_S as RESPONSE_MARGIN_S
from raftlog.tls import ClientSecurity
from raftlog.v1 import broker_pb2

log = logging.getLogger(__name__)

PRODUCER_EPOCH_MAX = 2**15 - 1  # a record batch's producer epoch is an int16

ACKS = {"all": -1, "-1": -1, -1: -1, "1": 1, 1: 1, "0": 0, 0: 0}


@dataclass(frozen=True)
class RecordMetadata:
    topic: str
    partition: int
    offset: int
    timestamp: int


class RecordFuture:
    """The outcome of one send: result() blocks; await works in asyncio."""

    __slots__ = ("_batch", "_index", "_timestamp")

    def __init__(self, batch: _Batch, index: int, timestamp: int):
        self._batch = batch
        self._index = index
        self._timestamp = timestamp

    def _metadata(self, base_offset: int) -> RecordMetadata:
        batch = self._batch
        offset = base_offset + self._index if base_offset >= 0 else -1
        return RecordMetadata(batch.topic, batch.partition, offset, self._timestamp)

    def result(self, timeout: float | None = None) -> RecordMetadata:
        return self._metadata(self._batch.outcome.result(timeout))

    def done(self) -> bool:
        return self._batch.outcome.done()

    def add_done_callback(self, callback) -> None:
        """callback(future) once the record is acknowledged or has failed (on the producer's
        sender thread: keep it short)."""
        self._batch.outcome.add_done_callback(lambda _: callback(self))

    def __await__(self):
        base_offset = yield from asyncio.wrap_future(self._batch.outcome).__await__()
        return self._metadata(base_offset)


@dataclass
class _Batch:
    topic: str
    partition: int
    created_s: float
    records: list = field(default_factory=list)  # (key, value, headers, timestamp_ms)
    size_bytes: int = 0
    sequence: int = -1
    encoded: bytes | None = None
    outcome: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class RecordAccumulator:
    """Batches waiting to be sent, a queue per partition, shared by the sending threads and the sender.

    Records go into the last batch of their partition's queue until it holds batch_size bytes.
    A batch leaves the queue only when the sender can send it (the partition has an in-flight
    slot), so while a leader stalls the records queued behind it fill whole batches, and the
    backlog goes out in few large requests once it answers again (one linger's worth per batch
    would send a record or two per request and never catch up).

    The records of every batch not yet completed are counted against buffer_memory bytes; an
    append that does not fit waits until completed batches free enough (or fails: ``append``).
    """

    RECORD_OVERHEAD_BYTES = 24

    def __init__(self, batch_size: int, linger_ms: int, buffer_memory: int):
        assert batch_size > 0 and buffer_memory > 0, f"batch_size={batch_size}, buffer_memory={buffer_memory}"
        self._batch_size = batch_size
        self._linger_s = linger_ms / 1000.0
        self._buffer_memory = buffer_memory
        self._lock = threading.Lock()
        self._space_freed = threading.Condition(self._lock)
        self._queues: dict[tuple[str, int], deque[_Batch]] = {}
        self._filled: list[_Batch] = []  # batches that took their last record, for the sender to encode early
        self.buffered_bytes = 0  # Invariant: 0 <= buffered_bytes <= buffer_memory
        self.unfinished = 0  # batches created and not yet completed
        self.failure: RaftlogError | None = None  # the sender failed: every append fails with this
        self.space_listeners: list = []  # called (on the completing thread) when bytes are freed

    def record_size(self, key: bytes | None, value: bytes | None, headers: list) -> int:
        # Called for every record: no generator when there are no headers (the common case).
        size = self.RECORD_OVERHEAD_BYTES + (len(key) if key else 0) + (len(value) if value else 0)
        if headers:
            size += sum(len(k) + len(v or b"") for k, v in headers)
        return size

    def try_append(
        self, topic: str, partition: int, key, value, headers, timestamp_ms: int
    ) -> tuple[RecordFuture, bool, bool] | None:
        """Adds a record; returns its future, whether a batch filled up (the sticky partitioner
        moves on) and whether the sender should wake (a batch filled up, or the record started
        its partition's only batch, which goes at once if nothing of the partition is in flight),
        or None when buffer_memory has no room for it now."""
        size = self.record_size(key, value, headers)
        if size > self._buffer_memory:
            raise RaftlogError(
                Errors.MESSAGE_TOO_LARGE,
                f"a record of {size} bytes can never fit in buffer.memory={self._buffer_memory}",
            )
        with self._lock:
            return self._append_locked(topic, partition, key, value, headers, timestamp_ms, size)

    def append(
        self, topic: str, partition: int, key, value, headers, timestamp_ms: int, max_block_s: float
    ) -> tuple[RecordFuture, bool, bool]:
        """try_append, waiting up to max_block_s for room (Kafka's max.block.ms); then fails.

        Blocks the calling thread: never call it on the thread that completes batches."""
        deadline = time.monotonic() + max_block_s
        size = self.record_size(key, value, headers)
        while True:
            appended = self.try_append(topic, partition, key, value, headers, timestamp_ms)
            if appended is not None:
                return appended
            with self._lock:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise self.buffer_full(size, max_block_s)
                if self.buffered_bytes + size > self._buffer_memory:
                    self._space_freed.wait(remaining_s)

    def buffer_full(self, size: int, max_block_s: float) -> RaftlogError:
        return RaftlogError(
            Errors.REQUEST_TIMED_OUT,
            f"no room for a record of {size} bytes: buffer.memory={self._buffer_memory} bytes stayed "
            f"full ({self.buffered_bytes} bytes not yet acknowledged) for max.block.ms="
            f"{int(max_block_s * 1000)}",
        )

    def _append_locked(self, topic, partition, key, value, headers, timestamp_ms, size):
        if self.failure is not None:
            raise self.failure
        if self.buffered_bytes + size > self._buffer_memory:
            return None
        queue = self._queues.get((topic, partition))
        if queue is None:
            queue = self._queues[(topic, partition)] = deque()
        batch = queue[-1] if queue else None
        filled = wake = False
        if batch is not None and batch.records and batch.size_bytes + size > self._batch_size:
            if batch.size_bytes < self._batch_size:  # (one that reached batch_size was reported then)
                self._filled.append(batch)
            batch, filled = None, True  # the last batch takes no more: start another
        if batch is None:
            batch = _Batch(topic, partition, time.monotonic())
            wake = not queue  # the partition's only batch: ready at once if the partition is idle
            queue.append(batch)
            self.unfinished += 1
        batch.records.append((key, value, headers, timestamp_ms))
        batch.size_bytes += size
        self.buffered_bytes += size
        if batch.size_bytes >= self._batch_size:
            self._filled.append(batch)
            filled = True
        return RecordFuture(batch, len(batch.records) - 1, timestamp_ms), filled, wake or filled

    def abandon(self, failure: RaftlogError) -> list[_Batch]:
        """The sender failed: every queued batch, taken out (the caller fails them); from now on
        appends fail with `failure` (set under the lock: no record slips in behind it)."""
        with self._lock:
            self.failure = failure
            batches = [batch for queue in self._queues.values() for batch in queue]
            self._queues.clear()
            self._filled.clear()
        return batches

    def take_filled(self) -> list[_Batch]:
        """Batches that will take no more records since the last call (they may have left already)."""
        with self._lock:
            filled, self._filled = self._filled, []
        return filled

    def drain(self, now_s: float, flush: bool, has_room, idle) -> list[_Batch]:
        """At most one batch per partition: the oldest, if it is ready and has_room(topic,
        partition) says the sender may send it now. Ready: full, flushing, lingered long enough,
        or idle(topic, partition): nothing of the partition is in flight, so there is no answer
        to batch behind and waiting would only add latency (linger applies while one is out)."""
        ready = []
        with self._lock:
            for key, queue in list(self._queues.items()):
                if not queue:
                    del self._queues[key]
                    continue
                oldest = queue[0]
                full = len(queue) > 1 or oldest.size_bytes >= self._batch_size
                lingered = now_s - oldest.created_s >= self._linger_s
                if (full or flush or lingered or idle(key)) and has_room(key):
                    ready.append(queue.popleft())
        return ready

    def linger_remaining_s(self, now_s: float) -> float | None:
        """How long until the next oldest batch still lingering is ready by linger alone; None when
        none is (the sender then waits for a wake-up: a new batch, a filled one, a completion)."""
        remaining = None
        with self._lock:
            for queue in self._queues.values():
                if queue:
                    left_s = queue[0].created_s + self._linger_s - now_s
                    if left_s > 0 and (remaining is None or left_s < remaining):
                        remaining = left_s
        return remaining

    def finished(self, batch: _Batch) -> None:
        with self._lock:
            self.unfinished -= 1
            self.buffered_bytes -= batch.size_bytes
            assert self.unfinished >= 0 and self.buffered_bytes >= 0, (
                f"finished more than was appended: unfinished={self.unfinished}, buffered={self.buffered_bytes}"
            )
            self._space_freed.notify_all()
        for listener in self.space_listeners:
            listener()


class _Sender:
    """Runs on an asyncio loop: drains ready batches, sends them, retries, completes them.

    Each round takes at most one batch per partition whose in-flight window has room, and sends
    those of the same leader in one Produce request. A batch that fails is retried on its own
    (same sequence) until delivery_timeout_ms; it keeps its place in its partition's window.
    """

    def __init__(self, metadata: ClusterMetadata, accumulator: RecordAccumulator, settings: dict):
        self._metadata = metadata
        self._accumulator = accumulator
        self._settings = settings
        self._acks = settings["acks"]
        self._wake = asyncio.Event()
        self._all_finished = asyncio.Event()  # flush() waits on it (no polling)
        self._flushing = 0  # flush() calls waiting: lingering batches are ready at once
        self._closing = False
        self._task: asyncio.Task | None = None
        self._producer_id, self._producer_epoch = -1, -1
        self._next_sequence: dict[tuple[str, int], int] = defaultdict(int)
        self._unacked: dict[tuple[str, int], set[int]] = defaultdict(set)
        # Per partition: the (producer id, epoch) its sequences run under, and the partitions one
        # of whose batches failed for good since (they start a new epoch once nothing is out).
        self._stamps: dict[tuple[str, int], tuple[int, int]] = {}
        self._sequence_gaps: set[tuple[str, int]] = set()
        # The outcomes of each partition's latest max_in_flight batches sent, oldest first.
        self._window: dict[tuple[str, int], deque[concurrent.futures.Future]] = defaultdict(deque)
        self._requests: set[asyncio.Task] = set()
        self._in_hand: list[_Batch] = []  # drained, being sent by _send_new
        # Read-only counters for stats() (perf produce): Produce requests sent and what they carried.
        self.sent = {"requests": 0, "batches": 0, "records": 0, "bytes": 0}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """A sender that fails (a bug: it handles every error a broker can give) fails what it
        holds and every later send, at once: a record must never wait forever for it."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("the producer's sender failed; its records fail", exc_info=exc)
        failure = RaftlogError(
            Errors.UNKNOWN_SERVER_ERROR, f"the producer's sender failed: {type(exc).__name__}: {exc}"
        )
        for batch in [*self._in_hand, *self._accumulator.abandon(failure)]:
            self._complete(batch, failure)
        self._in_hand = []

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> None:
        self._flushing += 1
        try:
            self._wake.set()
            while self._accumulator.unfinished > 0:
                self._all_finished.clear()
                await self._all_finished.wait()  # set by _complete when the last batch finishes
        finally:
            self._flushing -= 1

    async def close(self) -> None:
        await self.flush()
        if self._task is not None and self._task.done():
            return  # the sender failed (_ended reported it)
        # A flag, not task.cancel(): cancelling a task inside wait_for() can be swallowed
        # when the wait times out at the same moment (Python < 3.12).
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        while not self._closing:
            # No polling: the sender sleeps until a wake-up (a record that starts a partition's
            # only batch, a filled batch, a completion, a flush) or the next linger deadline.
            remaining_s = self._accumulator.linger_remaining_s(time.monotonic())
            if remaining_s is None:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining_s)
                except TimeoutError:
                    pass
            self._wake.clear()
            while True:
                batches = self._accumulator.drain(time.monotonic(), self._flushing > 0, self._has_room, self._idle)
                if not batches:
                    break
                self._in_hand = batches
                await self._send_new(batches)
                self._in_hand = []
            # Full batches waiting for a slot are encoded now, while the slots' batches are out,
            # so that a freed slot is refilled without an encoding in between.
            for batch in self._accumulator.take_filled():
                if batch.encoded is None:
                    batch.encoded = record_codec.encode_batch(
                        batch.records, self._settings["compression_type"], -1, -1, -1
                    )

    def _idle(self, key: tuple[str, int]) -> bool:
        """Nothing of the partition is in flight (every batch sent has completed)."""
        return all(outcome.done() for outcome in self._window[key])

    def _has_room(self, key: tuple[str, int]) -> bool:
        """The broker remembers a producer's last 5 batches per partition. A batch goes out only
        once the batch max_in_flight places before it has completed, so a batch being retried
        (its answer lost) is still in that window however many later ones completed."""
        if key in self._sequence_gaps:
            return self._idle(key)  # a new epoch starts only once no batch of the old one is out
        window = self._window[key]
        return len(window) < self._settings["max_in_flight"] or window[0].done()

    async def _send_new(self, batches: list[_Batch]) -> None:
        epochs_used_up = self._producer_epoch >= PRODUCER_EPOCH_MAX and any(
            (b.topic, b.partition) in self._sequence_gaps for b in batches
        )
        if self._settings["idempotent"] and (self._producer_id < 0 or epochs_used_up):
            try:
                await self._init_producer_id()
            except RaftlogError as error:  # no producer id to be had: these batches fail, the producer goes on
                for batch in batches:
                    self._complete(batch, error)
                return
        by_leader: dict[str, list[_Batch]] = defaultdict(list)
        for batch in batches:
            self._seal(batch)
            try:
                leader = await self._metadata.leader_for(batch.topic, batch.partition)
                if leader.address is None:
                    raise RaftlogError(Errors.LEADER_NOT_AVAILABLE, f"{batch.topic}-{batch.partition} has no leader")
            except RaftlogError as error:
                self._spawn(self._retry(batch, error))
                continue
            except Exception as exc:  # noqa: BLE001 - a future must always complete
                self._complete(batch, RaftlogError(Errors.UNKNOWN_SERVER_ERROR, repr(exc)))
                continue
            by_leader[leader.address].append(batch)
        for address, group in by_leader.items():
            self._spawn(self._send_first(address, group))

    def _seal(self, batch: _Batch) -> None:
        """Gives the batch its sequence and bytes, and its place in the partition's window."""
        key = (batch.topic, batch.partition)
        producer_id, epoch = -1, -1
        if self._producer_id >= 0:
            if key in self._sequence_gaps:
                self._start_new_epoch(key)
            producer_id, epoch = self._stamps.setdefault(key, (self._producer_id, self._producer_epoch))
            batch.sequence = self._next_sequence[key]
            self._next_sequence[key] = (batch.sequence + len(batch.records)) % (2**31)
            self._unacked[key].add(batch.sequence)
        if batch.encoded is None:
            batch.encoded = record_codec.encode_batch(
                batch.records, self._settings["compression_type"], producer_id, epoch, batch.sequence
            )
        elif producer_id >= 0:  # encoded early, before its sequence was known
            batch.encoded = record_codec.stamp_producer(batch.encoded, producer_id, epoch, batch.sequence)
        window = self._window[key]
        if len(window) >= self._settings["max_in_flight"]:
            oldest = window.popleft()
            assert oldest.done(), f"{key}: a batch went out before the one {len(window) + 1} places ahead completed"
        window.append(batch.outcome)

    def _start_new_epoch(self, key: tuple[str, int]) -> None:
        """The partition's sequences start again at 0 under a producer epoch it has not used: its
        broker takes a newer epoch from sequence 0 whatever it last saw of the old one. (Under a
        producer id taken since its last batch, the id's current epoch is new to it.)"""
        assert self._idle(key) and not self._unacked[key], f"{key}: a new epoch while batches of the old one are out"
        if self._stamps.get(key, (-1, -1))[0] == self._producer_id:
            assert self._producer_epoch < PRODUCER_EPOCH_MAX, f"epoch {self._producer_epoch} cannot grow: no new id"
            self._producer_epoch += 1  # the id's epochs only grow, whichever partition moved last
        self._stamps[key] = (self._producer_id, self._producer_epoch)
        self._next_sequence[key] = 0
        self._sequence_gaps.discard(key)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._requests.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._requests.discard)

    async def _send_first(self, address: str, batches: list[_Batch]) -> None:
        try:
            outcomes = await self._produce(address, batches)
        except Exception as exc:  # noqa: BLE001 - a future must always complete
            outcomes = [RaftlogError(Errors.UNKNOWN_SERVER_ERROR, repr(exc))] * len(batches)
        for batch, outcome in zip(batches, outcomes):
            if isinstance(outcome, RaftlogError):
                self._spawn(self._retry(batch, outcome))
            else:
                self._complete(batch, outcome)

    async def _retry(self, batch: _Batch, error: RaftlogError) -> None:
        """Sends the batch on its own until it is acknowledged, fails for good, or times out."""
        try:
            deadline = batch.created_s + self._settings["delivery_timeout_ms"] / 1000.0
            attempts = 1
            topic_missing = 0  # metadata answers in a row without the batch's topic or partition
            while (
                self._retriable(batch, error) and attempts <= self._settings["retries"] and time.monotonic() <= deadline
            ):
                if error.refresh_metadata or error.error.out_of_order_sequence:
                    self._metadata.invalidate()
                on_retry = self._settings.get("on_retry")
                if on_retry is not None:
                    on_retry(batch.topic, batch.partition, error, deadline - time.monotonic())
                await asyncio.sleep(self._settings["retry_backoff_ms"] / 1000.0 * random.uniform(0.8, 1.2))
                try:
                    try:
                        leader = await self._metadata.leader_for(batch.topic, batch.partition)
                    except RaftlogError as exc:
                        # Fresh metadata says the topic (or partition) does not exist: like Kafka's
                        # producer, fail now rather than at delivery.timeout.ms. Twice in a row, so a
                        # broker that has not applied a just-created topic yet is not taken at its word.
                        topic_missing = topic_missing + 1 if exc.error is Errors.UNKNOWN_TOPIC_OR_PARTITION else 0
                        if topic_missing >= 2:
                            self._complete(batch, exc)
                            return
                        raise
                    topic_missing = 0
                    if leader.address is None:
                        raise RaftlogError(
                            Errors.LEADER_NOT_AVAILABLE, f"{batch.topic}-{batch.partition} has no leader"
                        )
                    [outcome] = await self._produce(leader.address, [batch])
                except RaftlogError as exc:
                    outcome = exc
                if not isinstance(outcome, RaftlogError):
                    self._complete(batch, outcome)
                    return
                error, attempts = outcome, attempts + 1
            self._complete(batch, error)
        except Exception as exc:  # noqa: BLE001 - a future must always complete
            if not batch.outcome.done():
                self._complete(batch, RaftlogError(Errors.UNKNOWN_SERVER_ERROR, repr(exc)))

    def _retriable(self, batch: _Batch, error: RaftlogError) -> bool:
        if error.retriable:
            return True
        if not error.error.out_of_order_sequence:
            return False
        key = (batch.topic, batch.partition)
        if any(s < batch.sequence for s in self._unacked[key]):
            return True  # an earlier batch of this partition is still out: this one waits its turn
        # None is out. If one failed for good, the gap is real: this batch fails too (the partition
        # starts a new epoch). Otherwise the broker judged by sequences it no longer owns (a leader
        # that has not learned it was replaced): the current leader is asked again.
        return key not in self._sequence_gaps

    def _complete(self, batch: _Batch, outcome: int | RaftlogError) -> None:
        if batch.outcome.done():  # failed with the sender (_ended) while its request was out
            return
        key = (batch.topic, batch.partition)
        self._unacked[key].discard(batch.sequence)
        if isinstance(outcome, RaftlogError):
            if batch.sequence >= 0:
                self._sequence_gaps.add(key)
            batch.outcome.set_exception(outcome)
        else:
            batch.outcome.set_result(outcome)
        self._accumulator.finished(batch)
        self._wake.set()  # a window slot may have opened
        if self._accumulator.unfinished == 0:
            self._all_finished.set()

    async def _init_producer_id(self) -> None:
        deadline = time.monotonic() + self._settings["delivery_timeout_ms"] / 1000.0
        while True:
            try:
                if not self._metadata._brokers:
                    await self._metadata.refresh()
                stub = self._metadata.stub(self._metadata.any_broker())
                response = await stub.InitProducerId(broker_pb2.InitProducerIdRequest(), timeout=5)
                self._producer_id, self._producer_epoch = response.producer_id, response.producer_epoch
                return
            except (grpc.RpcError, RaftlogError) as exc:
                error = exc if isinstance(exc, RaftlogError) else error_from_rpc(exc)
                if not error.retriable or time.monotonic() > deadline:
                    raise error from None
                self._metadata.invalidate()  # the broker asked may be down: ask another
                await asyncio.sleep(self._settings["retry_backoff_ms"] / 1000.0)

    async def _produce(self, address: str, batches: list[_Batch]) -> list[int | RaftlogError]:
        """One Produce request carrying one batch per partition: each batch's base offset, or the
        error of this attempt."""
        now = time.monotonic()
        remaining_ms = min(
            int((b.created_s + self._settings["delivery_timeout_ms"] / 1000.0 - now) * 1000) for b in batches
        )
        timeout_ms = max(1, min(self._settings["request_timeout_ms"], remaining_ms))
        request = broker_pb2.ProduceRequest(
            acks=self._acks,
            timeout_ms=timeout_ms,
            partitions=[
                broker_pb2.PartitionRecords(topic=b.topic, partition=b.partition, records=b.encoded) for b in batches
            ],
        )
        sent = self.sent
        sent["requests"] += 1
        sent["batches"] += len(batches)
        sent["records"] += sum(len(b.records) for b in batches)
        sent["bytes"] += sum(len(b.encoded or b"") for b in batches)
        try:
            response = await self._metadata.pipelined(address, PRODUCE).request(
                request, timeout_s=timeout_ms / 1000.0 + RESPONSE_MARGIN_S
            )
        except RaftlogError as exc:
            return [exc] * len(batches)
        results = {(r.topic, r.partition): r for r in response.results}
        outcomes: list[int | RaftlogError] = []
        for batch in batches:
            result = results.get((batch.topic, batch.partition))
            if result is None:
                outcomes.append(
                    RaftlogError(Errors.UNKNOWN_SERVER_ERROR, f"no result for {batch.topic}-{batch.partition}")
                )
            elif result.error_reason:
                outcomes.append(RaftlogError.from_reason(result.error_reason, result.error_message))
            else:
                outcomes.append(result.base_offset)
        return outcomes


def _settings(
    acks,
    linger_ms,
    batch_size,
    compression_type,
    enable_idempotence,
    retries,
    max_in_flight,
    delivery_timeout_ms,
    request_timeout_ms,
    retry_backoff_ms,
    buffer_memory,
    max_block_ms,
) -> dict:
    if acks not in ACKS:
        raise ValueError(f"acks must be 'all', 1 or 0, not {acks!r}")
    acks_value = ACKS[acks]
    if enable_idempotence and acks_value != -1:
        raise ValueError("enable_idempotence=True requires acks='all'")
    idempotent = acks_value == -1 if enable_idempotence is None else bool(enable_idempotence)
    record_codec.check_compression(compression_type)
    if not 1 <= max_in_flight <= (5 if idempotent else 100):
        raise ValueError("max_in_flight must be 1..5 with idempotence")
    if batch_size < 1 or buffer_memory < 1 or max_block_ms < 0:
        raise ValueError("batch_size and buffer_memory must be >= 1, max_block_ms >= 0")
    return {
        "acks": acks_value,
        "linger_ms": linger_ms,
        "batch_size": batch_size,
        "compression_type": compression_type,
        "idempotent": idempotent,
        "retries": retries,
        "max_in_flight": max_in_flight,
        "delivery_timeout_ms": delivery_timeout_ms,
        "request_timeout_ms": request_timeout_ms,
        "retry_backoff_ms": retry_backoff_ms,
        "buffer_memory": buffer_memory,
        "max_block_ms": max_block_ms,
    }


class _ProducerBase:
    def __init__(
        self,
        bootstrap_servers,
        acks="all",
        # 5 ms, as Kafka 4.0 (KIP-1030) and librdkafka. It holds a batch back only while a request
        # of its partition is in flight, so it costs a lone record nothing (before, every batch
        # waited out its linger: 5-10 ms added to each record sent one at a time) and still
        # gathers records into larger batches under load, while they wait for an answer anyway.
        linger_ms: int = 5,
        batch_size: int = 16384,
        compression_type: str | None = None,
        enable_idempotence: bool | None = None,
        retries: int = 2**31 - 1,
        max_in_flight: int = 5,
        delivery_timeout_ms: int = 120_000,
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        buffer_memory: int = 32 * 1024 * 1024,
        max_block_ms: int = 60_000,
        on_retry: Callable[[str, int, RaftlogError, float], None] | None = None,
        security_protocol: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
    ):
        """on_retry(topic, partition, error, seconds_left): called on the sender's loop before each
        retry of a batch, so a caller (the console producer) can say what it is waiting for."""
        self._security = ClientSecurity.from_settings(
            security_protocol,
            ssl_cafile,
            ssl_certfile,
            ssl_keyfile,
            sasl_mechanism,
            sasl_plain_username,
            sasl_plain_password,
        )
        self._settings = _settings(
            acks,
            linger_ms,
            batch_size,
            compression_type,
            enable_idempotence,
            retries,
            max_in_flight,
            delivery_timeout_ms,
            request_timeout_ms,
            retry_backoff_ms,
            buffer_memory,
            max_block_ms,
        )
        self._settings["on_retry"] = on_retry
        self._bootstrap = bootstrap_servers
        self._accumulator = RecordAccumulator(batch_size, linger_ms, buffer_memory)
        self._sticky = StickyPartitioner()
        self._partition_counts: dict[str, int] = {}
        self._closed = False

    @property
    def settings(self) -> dict:
        """The settings in force (defaults filled in), read-only; callbacks left out."""
        return {name: value for name, value in self._settings.items() if not callable(value)}

    def _choose_partition(self, topic: str, key: bytes | None, partition: int | None) -> int:
        count = self._partition_counts[topic]
        if partition is not None:
            if not 0 <= partition < count:
                raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic} has no partition {partition}")
            return partition
        if key is not None:
            return partition_for_key(key, count)
        return self._sticky.partition(topic, count)

    def _record(
        self, topic, value, key, headers, partition, timestamp_ms
    ) -> tuple[str, int, bytes | None, bytes | None, list, int]:
        """(topic, partition, key, value, headers, timestamp_ms) as the accumulator takes them."""
        if self._closed:
            raise RaftlogError("INVALID_REQUEST", "the producer is closed")
        key = _to_bytes(key)
        value = _to_bytes(value)
        headers = [(k, _to_bytes(v)) for k, v in (headers or [])]
        chosen = self._choose_partition(topic, key, partition)
        timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        return topic, chosen, key, value, headers, timestamp_ms

    def _appended(self, topic: str, sticky: bool, filled: bool) -> None:
        if filled and sticky:
            self._sticky.batch_sent(topic, self._partition_counts[topic])


def _to_bytes(value) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"keys, values and header values must be bytes or str, not {type(value).__name__}")


class AsyncProducer(_ProducerBase):
    """asyncio flavour: ``fut = await producer.send(...)``, then ``metadata = await fut``."""

    def __init__(self, bootstrap_servers, **settings):
        super().__init__(bootstrap_servers, **settings)
        self._metadata: ClusterMetadata | None = None
        self._sender: _Sender | None = None
        self._space_freed = asyncio.Event()  # batches are completed on this producer's loop, so no thread hop
        self._accumulator.space_listeners.append(self._space_freed.set)

    async def start(self) -> None:
        if self._sender is None:
            self._metadata = ClusterMetadata(self._bootstrap, self._security)
            self._sender = _Sender(self._metadata, self._accumulator, self._settings)
            self._sender.start()

    async def _started(self) -> tuple[ClusterMetadata, _Sender]:
        if self._sender is None:  # once; send() calls this for every record
            await self.start()
        assert self._metadata is not None and self._sender is not None, "start() sets both"
        return self._metadata, self._sender

    async def send(
        self,
        topic: str,
        value=None,
        key=None,
        headers=None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        metadata, sender = await self._started()
        if topic not in self._partition_counts:
            self._partition_counts[topic] = len(await metadata.partitions_for(topic))
        record = self._record(topic, value, key, headers, partition, timestamp_ms)
        appended = self._accumulator.try_append(*record)
        if appended is None:
            appended = await self._wait_for_room(record)
        future, filled, wake = appended
        self._appended(topic, key is None and partition is None, filled)
        if wake:
            sender.wake()
        return future

    async def _wait_for_room(self, record: tuple) -> tuple[RecordFuture, bool, bool]:
        """buffer.memory is full: waits (max.block.ms at most) for acknowledged batches to free room."""
        max_block_s = self._settings["max_block_ms"] / 1000.0
        deadline = time.monotonic() + max_block_s
        while True:
            self._space_freed.clear()
            appended = self._accumulator.try_append(*record)
            if appended is not None:
                return appended
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                _, _, key, value, headers, _ = record
                raise self._accumulator.buffer_full(self._accumulator.record_size(key, value, headers), max_block_s)
            try:
                await asyncio.wait_for(self._space_freed.wait(), remaining_s)
            except TimeoutError:
                pass

    async def flush(self) -> None:
        if self._sender:
            await self._sender.flush()

    def stats(self) -> dict[str, int]:
        """Produce requests sent so far (retries included) and the batches, records and bytes they carried."""
        return dict(self._sender.sent) if self._sender else {"requests": 0, "batches": 0, "records": 0, "bytes": 0}

    async def close(self) -> None:
        if self._sender and self._metadata and not self._closed:
            self._closed = True
            await self._sender.close()
            await self._metadata.close()


class Producer(_ProducerBase):
    """Sync flavour: ``producer.send(...)`` returns a future; ``future.result()`` gives the RecordMetadata."""

    def __init__(self, bootstrap_servers, **settings):
        super().__init__(bootstrap_servers, **settings)
        self._background = BackgroundLoop("raftlog-producer")
        self._metadata = ClusterMetadata(bootstrap_servers, self._security)
        self._sender = _Sender(self._metadata, self._accumulator, self._settings)
        self._background.run(self._start_sender())

    async def _start_sender(self) -> None:
        self._sender.start()

    def send(
        self,
        topic: str,
        value=None,
        key=None,
        headers=None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        if topic not in self._partition_counts:
            partitions = self._background.run(self._metadata.partitions_for(topic), timeout_s=30)
            self._partition_counts[topic] = len(partitions)
        record = self._record(topic, value, key, headers, partition, timestamp_ms)
        # Blocks while buffer.memory is full, up to max.block.ms (so never call send() from a
        # RecordFuture callback: those run on the thread that frees the room).
        future, filled, wake = self._accumulator.append(*record, max_block_s=self._settings["max_block_ms"] / 1000.0)
        self._appended(topic, key is None and partition is None, filled)
        if wake:
            self._background.loop.call_soon_threadsafe(self._sender.wake)
        return future

    def flush(self, timeout_s: float | None = None) -> None:
        self._background.run(self._sender.flush(), timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._background.run(self._sender.close(), timeout_s)
            self._background.run(self._metadata.close(), 5)
        finally:
            self._background.stop()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
