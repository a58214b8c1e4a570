"""Producer and AsyncProducer, shaped like Kafka's producer.

Records go into a thread-safe accumulator, one open batch per partition; a batch is sealed
when it reaches batch_size bytes or has waited linger_ms, then a sender task on an asyncio
loop encodes it (RecordBatch v2, with the producer id and sequence when idempotent) and
sends it to the partition's leader. Up to max_in_flight batches per partition are out at
once; a failed batch is retried (same sequence, so the broker drops duplicates) until
delivery_timeout_ms. With idempotence, OUT_OF_ORDER_SEQUENCE while an earlier batch of the
partition is still being retried just means "wait for it", so order holds.

Each record's future points at its batch's result, so a send costs no thread hop and no
per-record future: ``Producer.send(...).result()`` blocks, ``await fut`` works in asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import grpc

from raftlog.client import records as record_codec
from raftlog.client.background import BackgroundLoop
from raftlog.client.cluster_metadata import ClusterMetadata
from raftlog.client.partitioner import StickyPartitioner, partition_for_key
from raftlog.channels import error_from_rpc
from raftlog.errors import RaftlogError
from raftlog.v1 import broker_pb2

ACKS = {"all": -1, "-1": -1, -1: -1, "1": 1, 1: 1, "0": 0, 0: 0}
# The broker answers within the request's timeout_ms; past this margin the leader is taken for
# unreachable (paused, cut off) and the batch is retried, on a new leader if there is one.
RESPONSE_MARGIN_S = 1.0


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
    """Open batches per partition, shared by the sending threads and the sender task."""

    RECORD_OVERHEAD_BYTES = 24

    def __init__(self, batch_size: int, linger_ms: int):
        self._batch_size = batch_size
        self._linger_s = linger_ms / 1000.0
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int], _Batch] = {}
        self._sealed: list[_Batch] = []
        self.unfinished = 0  # batches created and not yet completed

    def append(self, topic: str, partition: int, key, value, headers, timestamp_ms: int) -> tuple[RecordFuture, bool]:
        """Adds a record; returns its future and whether a batch was sealed (the sender should wake)."""
        size = len(key or b"") + len(value or b"") + self.RECORD_OVERHEAD_BYTES
        sealed = False
        with self._lock:
            batch = self._open.get((topic, partition))
            if batch is not None and batch.size_bytes + size > self._batch_size and batch.records:
                self._sealed.append(self._open.pop((topic, partition)))
                sealed, batch = True, None
            if batch is None:
                batch = self._open[(topic, partition)] = _Batch(topic, partition, time.monotonic())
                self.unfinished += 1
            batch.records.append((key, value, headers, timestamp_ms))
            batch.size_bytes += size
            if batch.size_bytes >= self._batch_size:
                self._sealed.append(self._open.pop((topic, partition)))
                sealed = True
            return RecordFuture(batch, len(batch.records) - 1, timestamp_ms), sealed

    def drain(self, now_s: float, flush: bool = False) -> list[_Batch]:
        """Sealed batches plus open ones that have lingered long enough (all of them on flush)."""
        with self._lock:
            for key, batch in list(self._open.items()):
                if flush or now_s - batch.created_s >= self._linger_s:
                    self._sealed.append(self._open.pop(key))
            ready, self._sealed = self._sealed, []
            return ready

    def has_open(self) -> bool:
        with self._lock:
            return bool(self._open)

    def finished(self, count: int = 1) -> None:
        with self._lock:
            self.unfinished -= count


class _Sender:
    """Runs on an asyncio loop: encodes, sends, retries, completes batches."""

    def __init__(self, metadata: ClusterMetadata, accumulator: RecordAccumulator, settings: dict):
        self._metadata = metadata
        self._accumulator = accumulator
        self._settings = settings
        self._acks = settings["acks"]
        self._wake = asyncio.Event()
        self._flush_requested = False
        self._closing = False
        self._task: asyncio.Task | None = None
        self._producer_id, self._producer_epoch = -1, -1
        self._next_sequence: dict[tuple[str, int], int] = defaultdict(int)
        self._in_flight: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._unacked: dict[tuple[str, int], set[int]] = defaultdict(set)
        self._window: dict[tuple[str, int], deque[asyncio.Task]] = defaultdict(deque)
        self._turns: dict[tuple[str, int], asyncio.Future] = {}  # the latest batch's "has its slot"
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> None:
        self._flush_requested = True
        self._wake.set()
        while self._accumulator.unfinished > 0:
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        await self.flush()
        # A flag, not task.cancel(): cancelling a task inside wait_for() can be swallowed
        # when the wait times out at the same moment (Python < 3.12).
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task

    async def _run(self) -> None:
        linger_s = max(self._settings["linger_ms"] / 1000.0, 0.001)
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), linger_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            flush, self._flush_requested = self._flush_requested, False
            for batch in self._accumulator.drain(time.monotonic(), flush):
                try:
                    await self._dispatch(batch)
                except (RaftlogError, grpc.RpcError) as exc:
                    # e.g. no producer id to be had: this batch fails, the producer goes on
                    error = exc if isinstance(exc, RaftlogError) else error_from_rpc(exc)
                    batch.outcome.set_exception(error)
                    self._accumulator.finished()

    async def _dispatch(self, batch: _Batch) -> None:
        key = (batch.topic, batch.partition)
        if self._settings["idempotent"] and self._producer_id < 0:
            await self._init_producer_id()
        if self._producer_id >= 0:
            batch.sequence = self._next_sequence[key]
            self._next_sequence[key] = (batch.sequence + len(batch.records)) % (2**31)
            self._unacked[key].add(batch.sequence)
        batch.encoded = record_codec.encode_batch(
            batch.records, self._settings["compression_type"], self._producer_id, self._producer_epoch,
            batch.sequence,
        )
        # Each partition's batches wait for their turn in a task of their own: a partition whose
        # leader cannot be reached must not hold up the others.
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        previous_turn, self._turns[key] = self._turns.get(key), turn
        loop.create_task(self._send_in_turn(batch, previous_turn, turn))

    async def _send_in_turn(self, batch: _Batch, previous_turn: asyncio.Future | None, turn: asyncio.Future) -> None:
        """Takes an in-flight slot after the partition's previous batch took its own, then delivers."""
        key = (batch.topic, batch.partition)
        try:
            if previous_turn is not None:
                await previous_turn
            # The broker remembers a producer's last 5 batches per partition. A batch goes out only
            # once every batch max_in_flight places before it has completed, so a batch being
            # retried (its answer lost) is still in that window however many later ones completed.
            window = self._window[key] if batch.sequence >= 0 else None
            while window is not None and len(window) >= self._settings["max_in_flight"]:
                oldest = window.popleft()
                if not oldest.done():
                    await asyncio.wait({oldest})  # its completion, whatever its outcome
            semaphore = self._in_flight.setdefault(key, asyncio.Semaphore(self._settings["max_in_flight"]))
            await semaphore.acquire()
            if window is not None:
                window.append(asyncio.current_task())
        finally:
            turn.set_result(None)  # the partition's next batch must never wait for good
        await self._deliver(batch, semaphore)

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

    async def _deliver(self, batch: _Batch, semaphore: asyncio.Semaphore) -> None:
        key = (batch.topic, batch.partition)
        try:
            base_offset = await self._send_with_retries(batch)
            batch.outcome.set_result(base_offset)
        except RaftlogError as exc:
            batch.outcome.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - a future must always complete
            batch.outcome.set_exception(RaftlogError("UNKNOWN_SERVER_ERROR", repr(exc)))
        finally:
            self._unacked[key].discard(batch.sequence)
            semaphore.release()
            self._accumulator.finished()

    async def _send_with_retries(self, batch: _Batch) -> int:
        deadline = batch.created_s + self._settings["delivery_timeout_ms"] / 1000.0
        attempts = 0
        while True:
            error = await self._send_once(batch)
            if isinstance(error, int):
                return error
            attempts += 1
            if not self._retriable(batch, error) or attempts > self._settings["retries"] or time.monotonic() > deadline:
                raise error
            if error.refresh_metadata:
                self._metadata.invalidate()
            await asyncio.sleep(self._settings["retry_backoff_ms"] / 1000.0 * random.uniform(0.8, 1.2))

    def _retriable(self, batch: _Batch, error: RaftlogError) -> bool:
        if error.retriable:
            return True
        # An earlier batch of this partition is still out: this one must wait its turn.
        earlier = [s for s in self._unacked[(batch.topic, batch.partition)] if s < batch.sequence]
        return error.error.out_of_order_sequence and bool(earlier)

    async def _send_once(self, batch: _Batch) -> int | RaftlogError:
        """The base offset, or the error of this attempt."""
        remaining_ms = int((batch.created_s + self._settings["delivery_timeout_ms"] / 1000.0 - time.monotonic()) * 1000)
        timeout_ms = max(1, min(self._settings["request_timeout_ms"], remaining_ms))
        try:
            leader = await self._metadata.leader_for(batch.topic, batch.partition)
            if leader.address is None:
                return RaftlogError("LEADER_NOT_AVAILABLE", f"{batch.topic}-{batch.partition} has no leader")
            request = broker_pb2.ProduceRequest(
                acks=self._acks, timeout_ms=timeout_ms,
                partitions=[broker_pb2.PartitionRecords(topic=batch.topic, partition=batch.partition,
                                                        records=batch.encoded)],
            )
            timeout_s = timeout_ms / 1000.0 + RESPONSE_MARGIN_S
            response = await self._metadata.stub(leader.address).Produce(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            return error_from_rpc(exc)
        except RaftlogError as exc:
            return exc
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # we are being cancelled
            # grpc.aio ends a call it cancelled itself (its channel reconnecting) this way: retry.
            return RaftlogError("BROKER_NOT_AVAILABLE", "the call was cancelled by the channel")
        result = response.results[0]
        if result.error_reason:
            return RaftlogError.from_reason(result.error_reason, result.error_message)
        return result.base_offset


def _settings(acks, linger_ms, batch_size, compression_type, enable_idempotence, retries, max_in_flight,
              delivery_timeout_ms, request_timeout_ms, retry_backoff_ms) -> dict:
    if acks not in ACKS:
        raise ValueError(f"acks must be 'all', 1 or 0, not {acks!r}")
    acks_value = ACKS[acks]
    if enable_idempotence and acks_value != -1:
        raise ValueError("enable_idempotence=True requires acks='all'")
    idempotent = acks_value == -1 if enable_idempotence is None else bool(enable_idempotence)
    record_codec.check_compression(compression_type)
    if not 1 <= max_in_flight <= (5 if idempotent else 100):
        raise ValueError("max_in_flight must be 1..5 with idempotence")
    return {
        "acks": acks_value, "linger_ms": linger_ms, "batch_size": batch_size, "compression_type": compression_type,
        "idempotent": idempotent, "retries": retries, "max_in_flight": max_in_flight,
        "delivery_timeout_ms": delivery_timeout_ms, "request_timeout_ms": request_timeout_ms,
        "retry_backoff_ms": retry_backoff_ms,
    }


class _ProducerBase:
    def __init__(self, bootstrap_servers, acks="all", linger_ms: int = 5, batch_size: int = 16384,
                 compression_type: str | None = None, enable_idempotence: bool | None = None,
                 retries: int = 2**31 - 1, max_in_flight: int = 5, delivery_timeout_ms: int = 120_000,
                 request_timeout_ms: int = 30_000, retry_backoff_ms: int = 100):
        self._settings = _settings(acks, linger_ms, batch_size, compression_type, enable_idempotence, retries,
                                   max_in_flight, delivery_timeout_ms, request_timeout_ms, retry_backoff_ms)
        self._bootstrap = bootstrap_servers
        self._accumulator = RecordAccumulator(batch_size, linger_ms)
        self._sticky = StickyPartitioner()
        self._partition_counts: dict[str, int] = {}
        self._closed = False

    def _choose_partition(self, topic: str, key: bytes | None, partition: int | None) -> int:
        count = self._partition_counts[topic]
        if partition is not None:
            if not 0 <= partition < count:
                raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic} has no partition {partition}")
            return partition
        if key is not None:
            return partition_for_key(key, count)
        return self._sticky.partition(topic, count)

    def _append(self, topic, value, key, headers, partition, timestamp_ms) -> tuple[RecordFuture, bool]:
        if self._closed:
            raise RaftlogError("INVALID_REQUEST", "the producer is closed")
        key = _to_bytes(key)
        value = _to_bytes(value)
        headers = [(k, _to_bytes(v)) for k, v in (headers or [])]
        chosen = self._choose_partition(topic, key, partition)
        timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        future, sealed = self._accumulator.append(topic, chosen, key, value, headers, timestamp_ms)
        if sealed and key is None and partition is None:
            self._sticky.batch_sent(topic, self._partition_counts[topic])
        return future, sealed


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

    async def start(self) -> None:
        if self._sender is None:
            self._metadata = ClusterMetadata(self._bootstrap)
            self._sender = _Sender(self._metadata, self._accumulator, self._settings)
            self._sender.start()

    async def send(self, topic: str, value=None, key=None, headers=None, partition: int | None = None,
                   timestamp_ms: int | None = None) -> RecordFuture:
        await self.start()
        if topic not in self._partition_counts:
            self._partition_counts[topic] = len(await self._metadata.partitions_for(topic))
        future, sealed = self._append(topic, value, key, headers, partition, timestamp_ms)
        if sealed:
            self._sender.wake()
        return future

    async def flush(self) -> None:
        if self._sender:
            await self._sender.flush()

    async def close(self) -> None:
        if self._sender and not self._closed:
            self._closed = True
            await self._sender.close()
            await self._metadata.close()


class Producer(_ProducerBase):
    """Sync flavour: ``producer.send(...)`` returns a future; ``future.result()`` gives the RecordMetadata."""

    def __init__(self, bootstrap_servers, **settings):
        super().__init__(bootstrap_servers, **settings)
        self._background = BackgroundLoop("raftlog-producer")
        self._metadata = ClusterMetadata(bootstrap_servers)
        self._sender = _Sender(self._metadata, self._accumulator, self._settings)
        self._background.run(self._start_sender())

    async def _start_sender(self) -> None:
        self._sender.start()

    def send(self, topic: str, value=None, key=None, headers=None, partition: int | None = None,
             timestamp_ms: int | None = None) -> RecordFuture:
        if topic not in self._partition_counts:
            partitions = self._background.run(self._metadata.partitions_for(topic), timeout_s=30)
            self._partition_counts[topic] = len(partitions)
        future, sealed = self._append(topic, value, key, headers, partition, timestamp_ms)
        if sealed:
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
