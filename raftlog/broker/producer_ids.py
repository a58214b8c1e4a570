"""Producer ids for idempotent producers, handed out from blocks the controller allocates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from raftlog.broker.controller_channel import ControllerChannel
from raftlog.errors import RaftlogError
from raftlog.v1 import controller_pb2


class ProducerIdManager:
    def __init__(
        self, cluster_id: str, broker_id: int, controller: ControllerChannel, broker_epoch: Callable[[], int | None]
    ):
        self._cluster_id = cluster_id
        self._broker_id = broker_id
        self._controller = controller
        self._broker_epoch = broker_epoch
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
        epoch = self._broker_epoch()
        if epoch is None:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", "this broker is not registered with a controller yet")
        request = controller_pb2.AllocateProducerIdsRequest(
            cluster_id=self._cluster_id, broker_id=self._broker_id, broker_epoch=epoch
        )
        response = await self._controller.call("AllocateProducerIds", request)
        assert response.count > 0, f"the controller allocated an empty block at {response.first_producer_id}"
        self._next, self._end = response.first_producer_id, response.first_producer_id + response.count
