"""The client's view of the cluster (asyncio): brokers, partition leaders, refreshed on demand."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from raftlog.client.connection import parse_servers
from raftlog.errors import RaftlogError, error_from_rpc
from raftlog.v1 import broker_pb2, broker_pb2_grpc

GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024)]
METADATA_TIMEOUT_S = 5.0
MIN_REFRESH_INTERVAL_S = 0.05


@dataclass(frozen=True)
class PartitionLeader:
    leader_id: int
    leader_epoch: int
    address: str | None  # None: no live leader right now


class ClusterMetadata:
    def __init__(self, bootstrap_servers: str | list[str]):
        self._bootstrap = parse_servers(bootstrap_servers)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._brokers: dict[int, str] = {}
        self._partitions: dict[str, list[PartitionLeader]] = {}
        self._unknown_topics: set[str] = set()
        self._last_refresh = 0.0
        self._stale = False  # a caller saw a routing error: refresh before the next lookup
        self._lock = asyncio.Lock()

    def channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
        return self._channels[address]

    def stub(self, address: str) -> broker_pb2_grpc.BrokerServiceStub:
        return broker_pb2_grpc.BrokerServiceStub(self.channel(address))

    def any_broker(self) -> str:
        return next(iter(self._brokers.values()), self._bootstrap[0])

    async def refresh(self, topics: list[str] | None = None, force: bool = False) -> None:
        """Fetches metadata, at most once per MIN_REFRESH_INTERVAL_S unless forced (a new topic):
        callers that saw a routing error retry after a backoff anyway."""
        async with self._lock:
            if not force and time.monotonic() - self._last_refresh < MIN_REFRESH_INTERVAL_S:
                return
            response = await self._fetch_metadata(topics)
            self._brokers = {b.broker_id: f"{b.host}:{b.port}" for b in response.brokers if not b.fenced}
            for topic in response.topics:
                if topic.error_reason:
                    self._unknown_topics.add(topic.name)
                    self._partitions.pop(topic.name, None)
                    continue
                self._unknown_topics.discard(topic.name)
                self._partitions[topic.name] = [
                    PartitionLeader(p.leader, p.leader_epoch, self._brokers.get(p.leader))
                    for p in sorted(topic.partitions, key=lambda p: p.partition)
                ]
            self._last_refresh = time.monotonic()
            self._stale = False

    async def _fetch_metadata(self, topics: list[str] | None) -> broker_pb2.MetadataResponse:
        last_error: RaftlogError | None = None
        for address in list(dict.fromkeys([*self._brokers.values(), *self._bootstrap])):
            try:
                return await self.stub(address).Metadata(broker_pb2.MetadataRequest(topics=topics or []),
                                                         timeout=METADATA_TIMEOUT_S)
            except grpc.RpcError as exc:
                last_error = error_from_rpc(exc)
        raise last_error or RaftlogError("BROKER_NOT_AVAILABLE", "no broker answered")

    async def partitions_for(self, topic: str) -> list[PartitionLeader]:
        if topic not in self._partitions:
            await self.refresh([topic] + list(self._partitions), force=True)
        elif self._stale:
            await self.refresh(list(self._partitions))
        if topic not in self._partitions:
            raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"topic {topic!r} does not exist")
        return self._partitions[topic]

    async def leader_for(self, topic: str, partition: int) -> PartitionLeader:
        partitions = await self.partitions_for(topic)
        if not 0 <= partition < len(partitions):
            raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic} has no partition {partition}")
        return partitions[partition]

    def invalidate(self) -> None:
        """Leaders may have moved: the next lookup refreshes (rate-limited)."""
        self._stale = True

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
