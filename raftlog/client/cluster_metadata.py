"""The client's view of the cluster (asyncio): brokers, partition leaders, refreshed on demand."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from raftlog.channels import aio_channel, error_from_rpc
from raftlog.client.connection import parse_servers
from raftlog.client.pipelined import PipelinedCall, PipelinedMethod
from raftlog.errors import Errors, RaftlogError
from raftlog.limits import CLIENT_METADATA_TIMEOUT_S as METADATA_TIMEOUT_S
from raftlog.limits import CLIENT_MIN_METADATA_REFRESH_S as MIN_REFRESH_INTERVAL_S
from raftlog.tls import ClientSecurity, ProtocolCheck
from raftlog.v1 import broker_pb2, broker_pb2_grpc


@dataclass(frozen=True)
class PartitionLeader:
    leader_id: int
    leader_epoch: int
    address: str | None  # None: no live leader right now


def _newer(known: PartitionLeader | None, fresh: PartitionLeader) -> PartitionLeader:
    """A broker cut off from the controller serves an old image: never let it move a leader
    back to an older leader epoch (KIP-320's rule)."""
    if known is None or fresh.leader_epoch >= known.leader_epoch:
        return fresh
    return known


class ClusterMetadata:
    def __init__(self, bootstrap_servers: str | list[str], security: ClientSecurity | None = None):
        self._bootstrap = parse_servers(bootstrap_servers)
        self.security = security or ClientSecurity()
        self._protocol_check = ProtocolCheck(self.security)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._pipelined: dict[tuple[str, PipelinedMethod], PipelinedCall] = {}
        self._brokers: dict[int, str] = {}
        self._partitions: dict[str, list[PartitionLeader]] = {}
        self._topic_errors: dict[str, str] = {}  # topic -> the error its latest metadata answer gave
        self._last_refresh = 0.0
        self._stale = False  # a caller saw a routing error: refresh before the next lookup
        self._last_answered: str | None = None
        self._topic_ids: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    def channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = aio_channel(address, security=self.security)
        return self._channels[address]

    def stub(self, address: str) -> broker_pb2_grpc.BrokerServiceStub:
        return broker_pb2_grpc.BrokerServiceStub(self.channel(address))

    def pipelined(self, address: str, method: PipelinedMethod) -> PipelinedCall:
        """The pipelined stream of method to address (client/pipelined.py), one per broker."""
        key = (address, method)
        found = self._pipelined.get(key)
        if found is None:
            found = self._pipelined[key] = PipelinedCall(self.channel(address), method, self.security.login)
        return found

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
                self._apply_topic(topic)
            self._last_refresh = time.monotonic()
            self._stale = False

    def _apply_topic(self, topic: broker_pb2.TopicMetadata) -> None:
        if topic.error_reason:
            self._topic_errors[topic.name] = topic.error_reason
            self._partitions.pop(topic.name, None)
            return
        self._topic_errors.pop(topic.name, None)
        # Epochs start again for a topic deleted and created anew (a new topic id).
        same_topic = self._topic_ids.get(topic.name) == topic.topic_id
        known = self._partitions.get(topic.name, []) if same_topic else []
        self._topic_ids[topic.name] = topic.topic_id
        fresh = [
            PartitionLeader(p.leader, p.leader_epoch, self._brokers.get(p.leader))
            for p in sorted(topic.partitions, key=lambda p: p.partition)
        ]
        self._partitions[topic.name] = [
            _newer(known[i] if i < len(known) else None, leader) for i, leader in enumerate(fresh)
        ]

    async def _fetch_metadata(self, topics: list[str] | None) -> broker_pb2.MetadataResponse:
        """Asks the broker that answered last first: one that is down or cut off costs a
        timeout once, not on every refresh."""
        last_error: RaftlogError | None = None
        first = [self._last_answered] if self._last_answered else []
        for address in list(dict.fromkeys([*first, *self._brokers.values(), *self._bootstrap])):
            try:
                response = await self.stub(address).Metadata(
                    broker_pb2.MetadataRequest(topics=topics or []), timeout=METADATA_TIMEOUT_S
                )
                self._last_answered = address
                return response
            except grpc.RpcError as exc:
                last_error = error_from_rpc(exc)
                if last_error.error is Errors.BROKER_NOT_AVAILABLE:  # not reached: maybe TLS vs plaintext
                    mismatch = await asyncio.to_thread(self._protocol_check.after_failure, address)
                    if mismatch is not None:
                        raise mismatch from None
        raise last_error or RaftlogError("BROKER_NOT_AVAILABLE", "no broker answered")

    async def partitions_for(self, topic: str) -> list[PartitionLeader]:
        if topic not in self._partitions:
            await self.refresh([topic] + list(self._partitions), force=True)
        elif self._stale:
            await self.refresh(list(self._partitions))
        if topic not in self._partitions:
            reason = self._topic_errors.get(topic, "UNKNOWN_TOPIC_OR_PARTITION")
            if reason == "TOPIC_AUTHORIZATION_FAILED":
                raise RaftlogError(reason, f"this client's principal may not describe topic {topic!r}")
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
        for call in self._pipelined.values():
            await call.close()
        self._pipelined.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
