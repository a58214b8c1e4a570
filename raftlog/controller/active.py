"""The active controller: runs on every controller node, acts only while it is the Raft leader.

Every decision first waits for a ReadIndex, so it sees all metadata committed by earlier
leaders, and decisions are taken one at a time so that two of them never read the same
image and commit records that contradict each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from raftlog.controller import decisions
from raftlog.errors import RaftlogError
from raftlog.metadata.records import encode_batch, no_op
from raftlog.metadata.state_machine import MetadataStateMachine
from raftlog.raft import NotLeaderError
from raftlog.v1 import admin_pb2, metadata_pb2

log = logging.getLogger(__name__)


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


class ActiveController:
    def __init__(
        self,
        driver,
        state_machine: MetadataStateMachine,
        session_timeout_ms: int,
        clock_ms: Callable[[], float] = _monotonic_ms,
    ):
        self._driver = driver
        self._state_machine = state_machine
        self._session_timeout_ms = session_timeout_ms
        self._clock_ms = clock_ms
        self._sessions = decisions.BrokerSessions()
        self._decision_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._was_leader = False

    @property
    def image(self):
        return self._state_machine.image

    def is_active(self) -> bool:
        return self._driver.status().leader_id == self._driver.status().node_id

    async def start(self) -> None:
        self._task = asyncio.create_task(self._fence_expired_loop(), name="controller-session-expiry")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _commit(self, records: list[metadata_pb2.MetadataRecord]) -> int:
        """Proposes the records as one entry; returns its offset once applied here."""
        return await self._propose(encode_batch(*records))

    async def _propose(self, data: bytes) -> int:
        try:
            return await self._driver.propose(data)
        except NotLeaderError as exc:
            raise RaftlogError("NOT_CONTROLLER", "this node is not the active controller", exc.leader_id) from None
        except TimeoutError:
            raise RaftlogError("REQUEST_TIMED_OUT", "the metadata quorum did not commit in time") from None

    async def _prepare(self) -> None:
        """Confirms leadership and catches up with everything committed before deciding."""
        try:
            await self._driver.read_index()
        except NotLeaderError as exc:
            raise RaftlogError("NOT_CONTROLLER", "this node is not the active controller", exc.leader_id) from None
        except TimeoutError:
            raise RaftlogError("NOT_CONTROLLER", "leadership could not be confirmed") from None
        if not self._was_leader:
            # A new term of ours: every broker gets a fresh session before any can expire.
            self._sessions.reset(list(self.image.brokers), self._clock_ms())
            self._was_leader = True

    async def register_broker(self, request) -> int:
        async with self._decision_lock:
            await self._prepare()
            now_ms = self._clock_ms()
            new_records = decisions.register_broker(
                self.image,
                request.broker_id,
                request.incarnation_id,
                request.endpoint.host,
                request.endpoint.port,
                request.rack,
                self._sessions,
                now_ms,
                self._session_timeout_ms,
            )
            offset = await self._commit(new_records)
            self._sessions.touch(request.broker_id, now_ms)
            log.info("registered broker %d at %s:%d, epoch %d", request.broker_id, request.endpoint.host,
                     request.endpoint.port, offset)
            return offset

    async def broker_heartbeat(self, request) -> bool:
        """Returns whether the broker is fenced after this heartbeat."""
        async with self._decision_lock:
            await self._prepare()
            new_records = decisions.broker_heartbeat(
                self.image, request.broker_id, request.broker_epoch, request.metadata_offset, request.want_fence
            )
            if not request.want_fence:
                self._sessions.touch(request.broker_id, self._clock_ms())
            if new_records:
                await self._commit(new_records)
                log.info("broker %d %s", request.broker_id, "fenced" if request.want_fence else "unfenced")
            return self.image.brokers[request.broker_id].fenced

    async def alter_configs(
        self, resource: admin_pb2.ConfigResource, ops: list[admin_pb2.AlterConfigOp], validate_only: bool
    ) -> int:
        async with self._decision_lock:
            await self._prepare()
            new_records = decisions.alter_configs(self.image, resource, ops)
            if validate_only:
                return self.image.offset
            return await self._commit(new_records)

    async def benchmark(self, count: int, concurrency: int, payload_bytes: int) -> tuple[int, float, list[float]]:
        """Commits `count` no-op entries with `concurrency` in flight; returns (committed, seconds, latencies_ms)."""
        await self._prepare()
        data = encode_batch(no_op(b"x" * payload_bytes))
        latencies_ms: list[float] = []
        remaining = iter(range(count))

        async def writer() -> None:
            for _ in remaining:
                started = time.perf_counter()
                await self._propose(data)
                latencies_ms.append((time.perf_counter() - started) * 1000.0)

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(max(1, concurrency))))
        return len(latencies_ms), time.perf_counter() - started, latencies_ms

    async def _fence_expired_loop(self) -> None:
        interval_s = max(0.05, self._session_timeout_ms / 4000.0)
        while True:
            await asyncio.sleep(interval_s)
            if not self.is_active():
                self._was_leader = False
                continue
            try:
                await self._fence_expired()
            except RaftlogError as exc:
                log.debug("session expiry check skipped: %s", exc)

    async def _fence_expired(self) -> None:
        async with self._decision_lock:
            await self._prepare()
            expired = decisions.fence_expired(self.image, self._sessions, self._clock_ms(), self._session_timeout_ms)
            if expired:
                ids = [r.broker_fencing.broker_id for r in expired]
                log.warning("fencing brokers %s: no heartbeat for %d ms", ids, self._session_timeout_ms)
                await self._commit(expired)
