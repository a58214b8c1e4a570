"""Consumer and AsyncConsumer: assign partitions, seek, poll records (Kafka's consumer, no groups yet).

Each poll first hands out records buffered by the previous fetch (up to max_poll_records);
otherwise it resolves missing positions with ListOffsets (auto_offset_reset), sends one Fetch
per partition leader (long poll, fetch_max_wait_ms) and decodes the batches, dropping
records before the position (a batch may start earlier than the offset asked for).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import grpc

from raftlog.channels import error_from_rpc
from raftlog.client import records as record_codec
from raftlog.client.background import BackgroundLoop
from raftlog.client.cluster_metadata import ClusterMetadata
from raftlog.errors import RaftlogError
from raftlog.limits import CONSUMER_RETRY_BACKOFF_S as RETRY_BACKOFF_S
from raftlog.v1 import broker_pb2

EARLIEST, LATEST = -2, -1


@dataclass(frozen=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


class AsyncConsumer:
    def __init__(self, bootstrap_servers, group_id: str | None = None, auto_offset_reset: str = "earliest",
                 fetch_max_wait_ms: int = 500, fetch_min_bytes: int = 1, fetch_max_bytes: int = 50 * 1024 * 1024,
                 max_partition_fetch_bytes: int = 1024 * 1024, max_poll_records: int = 500,
                 request_timeout_ms: int = 30_000):
        if group_id is not None:
            raise ValueError("consumer groups are not supported yet; use assign() without group_id")
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError("auto_offset_reset must be earliest, latest or none")
        self._metadata = ClusterMetadata(bootstrap_servers)
        self._reset = auto_offset_reset
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_min_bytes = fetch_min_bytes
        self._fetch_max_bytes = fetch_max_bytes
        self._partition_max_bytes = max_partition_fetch_bytes
        self._max_poll_records = max_poll_records
        self._request_timeout_s = request_timeout_ms / 1000.0
        self._positions: dict[TopicPartition, int | None] = {}
        self._buffer: deque[ConsumerRecord] = deque()

    # -- assignment and positions -----------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._positions = {tp: self._positions.get(tp) for tp in partitions}
        self._buffer = deque(r for r in self._buffer if TopicPartition(r.topic, r.partition) in self._positions)

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self._positions:
            raise ValueError(f"{tp} is not assigned")
        if offset < 0:
            raise ValueError("offset must be >= 0")
        self._positions[tp] = offset
        self._buffer = deque(r for r in self._buffer if (r.topic, r.partition) != (tp.topic, tp.partition))

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seek(tp, await self._list_offset(tp, EARLIEST))

    async def seek_to_end(self, tp: TopicPartition) -> None:
        self.seek(tp, await self._list_offset(tp, LATEST))

    async def position(self, tp: TopicPartition) -> int:
        """The offset of the next record poll() returns for tp (records already fetched but
        not yet handed out come first, as in Kafka)."""
        if self._positions.get(tp) is None:
            await self._reset_position(tp)
        for record in self._buffer:
            if record.partition == tp.partition and record.topic == tp.topic:
                return record.offset
        position = self._positions[tp]
        assert position is not None, f"{tp}: no position after a reset"
        return position

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: await self._list_offset(tp, LATEST) for tp in partitions}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: await self._list_offset(tp, EARLIEST) for tp in partitions}

    async def _list_offset(self, tp: TopicPartition, timestamp: int) -> int:
        deadline = time.monotonic() + self._request_timeout_s
        while True:
            try:
                leader = await self._metadata.leader_for(tp.topic, tp.partition)
                if leader.address is None:
                    raise RaftlogError("LEADER_NOT_AVAILABLE", f"{tp} has no leader")
                request = broker_pb2.ListOffsetsRequest(partitions=[
                    broker_pb2.ListOffsetsPartition(topic=tp.topic, partition=tp.partition, timestamp=timestamp)])
                result = (await self._metadata.stub(leader.address).ListOffsets(request, timeout=5)).results[0]
                if result.error_reason:
                    raise RaftlogError.from_reason(result.error_reason, result.error_message)
                return result.offset
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            except RaftlogError as exc:
                error = exc
            if not error.retriable or time.monotonic() > deadline:
                raise error
            if error.refresh_metadata:
                self._metadata.invalidate()
            await asyncio.sleep(RETRY_BACKOFF_S)

    async def _reset_position(self, tp: TopicPartition) -> None:
        if self._reset == "none":
            raise RaftlogError("OFFSET_OUT_OF_RANGE", f"no valid position for {tp} and auto_offset_reset=none")
        self._positions[tp] = await self._list_offset(tp, EARLIEST if self._reset == "earliest" else LATEST)

    # -- polling ----------------------------------------------------------------------------

    async def poll(self, timeout_ms: int = 1000) -> list[ConsumerRecord]:
        """Records from the assigned partitions, waiting up to timeout_ms for some to arrive."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while not self._buffer:
            for tp, position in list(self._positions.items()):
                if position is None:
                    await self._reset_position(tp)
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if not self._positions or remaining_ms <= 0:
                break
            await self._fetch_once(min(remaining_ms, self._fetch_max_wait_ms))
            if time.monotonic() >= deadline:
                break
        count = min(len(self._buffer), self._max_poll_records)
        return [self._buffer.popleft() for _ in range(count)]

    async def _fetch_once(self, max_wait_ms: int) -> None:
        by_leader: dict[str, list[TopicPartition]] = {}
        for tp in self._positions:
            try:
                leader = await self._metadata.leader_for(tp.topic, tp.partition)
            except RaftlogError:
                self._metadata.invalidate()
                continue
            if leader.address is not None:
                by_leader.setdefault(leader.address, []).append(tp)
        if not by_leader:
            self._metadata.invalidate()
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        await asyncio.gather(*(self._fetch_from(address, tps, max_wait_ms) for address, tps in by_leader.items()))

    async def _fetch_from(self, address: str, tps: list[TopicPartition], max_wait_ms: int) -> None:
        request = broker_pb2.FetchRequest(
            max_wait_ms=max_wait_ms, min_bytes=self._fetch_min_bytes, max_bytes=self._fetch_max_bytes,
            partitions=[broker_pb2.FetchPartition(topic=tp.topic, partition=tp.partition,
                                                  fetch_offset=self._positions[tp],
                                                  partition_max_bytes=self._partition_max_bytes,
                                                  current_leader_epoch=-1)
                        for tp in tps],
        )
        try:
            response = await self._metadata.stub(address).Fetch(request, timeout=max_wait_ms / 1000.0 + 10)
        except grpc.RpcError:
            self._metadata.invalidate()
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        for result in response.results:
            await self._take(TopicPartition(result.topic, result.partition), result)

    async def _take(self, tp: TopicPartition, result: broker_pb2.FetchPartitionResult) -> None:
        if tp not in self._positions or self._positions[tp] is None:
            return
        if result.error_reason == "OFFSET_OUT_OF_RANGE":
            await self._reset_position(tp)
            return
        if result.error_reason:
            if RaftlogError.from_reason(result.error_reason, result.error_message).refresh_metadata:
                self._metadata.invalidate()
            return
        position = self._positions[tp]
        assert position is not None, f"{tp}: fetched without a position"
        for offset, timestamp, key, value, headers in record_codec.decode_records(result.records):
            if offset >= position:
                self._buffer.append(ConsumerRecord(tp.topic, tp.partition, offset, timestamp, key, value, headers))
                position = offset + 1
        self._positions[tp] = position

    async def close(self) -> None:
        await self._metadata.close()


class Consumer:
    """Sync flavour of AsyncConsumer (its coroutines run on a background loop)."""

    def __init__(self, bootstrap_servers, **settings):
        self._background = BackgroundLoop("raftlog-consumer")
        self._consumer = self._background.run(self._make(bootstrap_servers, settings))

    @staticmethod
    async def _make(bootstrap_servers, settings) -> AsyncConsumer:
        return AsyncConsumer(bootstrap_servers, **settings)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._consumer.assign(partitions)

    def assignment(self) -> set[TopicPartition]:
        return self._consumer.assignment()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(tp, offset)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self._background.run(self._consumer.seek_to_beginning(tp))

    def seek_to_end(self, tp: TopicPartition) -> None:
        self._background.run(self._consumer.seek_to_end(tp))

    def position(self, tp: TopicPartition) -> int:
        return self._background.run(self._consumer.position(tp))

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return self._background.run(self._consumer.end_offsets(partitions))

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return self._background.run(self._consumer.beginning_offsets(partitions))

    def poll(self, timeout_ms: int = 1000) -> list[ConsumerRecord]:
        return self._background.run(self._consumer.poll(timeout_ms))

    def close(self) -> None:
        try:
            self._background.run(self._consumer.close(), 5)
        finally:
            self._background.stop()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
