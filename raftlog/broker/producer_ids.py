"""Producer ids for idempotent producers, handed out from blocks the controller allocates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from raftlog.channels import Peers, error_from_rpc
from raftlog.errors import RaftlogError
from raftlog.v1 import controller_pb2, controller_pb2_grpc


class ProducerIdManager:
    def __init__(self, cluster_id: str, broker_id: int, peers: Peers, broker_epoch: Callable[[], int | None],
                 controller_id: Callable[[], int | None]):
        self._cluster_id = cluster_id
        self._broker_id = broker_id
        self._peers = peers
        self._broker_epoch = broker_epoch
        self._controller_id = controller_id
        self._next = 0
        self._end = 0  # exclusive
        self._lock = asyncio.Lock()

    async def next_id(self) -> int:
        async with self._lock:
            if self._next >= self._end:
                await self._allocate_block()
            producer_id = self._next
            self._next += 1
            return producer_id

    async def _allocate_block(self) -> None:
        epoch, controller_id = self._broker_epoch(), self._controller_id()
        if epoch is None or controller_id is None:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", "this broker is not registered with a controller yet")
        stub = controller_pb2_grpc.ControllerServiceStub(self._peers.channel(controller_id))
        request = controller_pb2.AllocateProducerIdsRequest(cluster_id=self._cluster_id, broker_id=self._broker_id,
                                                            broker_epoch=epoch)
        try:
            response = await stub.AllocateProducerIds(request, timeout=5)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        self._next, self._end = response.first_producer_id, response.first_producer_id + response.count
