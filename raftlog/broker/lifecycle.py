"""A broker's side of the controller protocol: register, then heartbeat until shutdown.

The broker registers with a fresh incarnation id on every start; the controller gives it
an epoch (the offset of the registration) and keeps it fenced until its heartbeats show
that its metadata has caught up to that offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from raftlog.broker.clock_skew import ClockSkew
from raftlog.broker.controller_channel import ControllerChannel
from raftlog.errors import Errors, RaftlogError
from raftlog.limits import HEARTBEAT_RETRY_BACKOFF_S as RETRY_BACKOFF_S
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import controller_pb2, metadata_pb2

log = logging.getLogger(__name__)


def _wall_ms() -> float:
    return time.time() * 1000.0


class BrokerLifecycle:
    def __init__(
        self,
        cluster_id: str,
        broker_id: int,
        advertised_host: str,
        advertised_port: int,
        controller: ControllerChannel,
        metadata_offset: Callable[[], int],
        heartbeat_interval_ms: int,
        session_timeout_ms: int,
        tasks: TaskSupervisor,
        clock_skew_max_ms: int,  # broker.clock.skew.max.ms
        offline_replicas: Callable[[], list[tuple[bytes, int]]] = list,
        wall_clock_ms: Callable[[], float] = _wall_ms,
        advertised_listeners: tuple[tuple[str, str, int], ...] = (),
    ):
        self._supervisor = tasks
        self._offline_replicas = offline_replicas  # (topic id, partition) this broker cannot serve
        self._cluster_id = cluster_id
        self._broker_id = broker_id
        self._endpoint = metadata_pb2.Endpoint(host=advertised_host, port=advertised_port)
        self._listeners = [
            metadata_pb2.Endpoint(listener=name, host=host, port=port) for name, host, port in advertised_listeners
        ]
        self._controller = controller
        self._metadata_offset = metadata_offset
        self._heartbeat_interval_s = heartbeat_interval_ms / 1000.0
        self._session_timeout_s = session_timeout_ms / 1000.0
        self.incarnation_id = uuid.uuid4().hex
        self.broker_epoch: int | None = None
        self.fenced = True
        self._task: asyncio.Task | None = None
        self.clock_skew = ClockSkew(clock_skew_max_ms)
        self._wall_clock_ms = wall_clock_ms
        self._wake = asyncio.Event()  # set: send the next heartbeat now

    def heartbeat_now(self) -> None:
        """The broker's offline replicas changed: tell the controller without waiting for the
        interval, so their leadership moves at once."""
        self._wake.set()

    async def start(self) -> None:
        self._task = self._supervisor.spawn(self._run(), name="broker-heartbeat", critical=True)

    async def stop(self) -> None:
        """Asks to be fenced (best effort), so clients stop being sent here."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.broker_epoch is not None and not self.fenced:
            try:
                await self._heartbeat(want_fence=True)
            except (TimeoutError, RaftlogError):
                pass

    async def _register(self) -> None:
        request = controller_pb2.RegisterBrokerRequest(
            cluster_id=self._cluster_id,
            broker_id=self._broker_id,
            incarnation_id=self.incarnation_id,
            endpoint=self._endpoint,
            listeners=self._listeners,
        )
        response = await self._controller.call("RegisterBroker", request)
        self.broker_epoch = response.broker_epoch
        self.fenced = True
        log.info("broker %d registered with epoch %d", self._broker_id, self.broker_epoch)

    async def _heartbeat(self, want_fence: bool = False) -> None:
        request = controller_pb2.BrokerHeartbeatRequest(
            cluster_id=self._cluster_id,
            broker_id=self._broker_id,
            broker_epoch=self.broker_epoch,
            metadata_offset=self._metadata_offset(),
            want_fence=want_fence,
            offline_replicas=[
                controller_pb2.ReplicaRef(topic_id=topic_id, partition=index)
                for topic_id, index in self._offline_replicas()
            ],
        )
        sent_ms = self._wall_clock_ms()
        request.broker_time_ms = int(sent_ms)
        response = await self._controller.call("BrokerHeartbeat", request)
        if response.controller_time_ms > 0:  # 0: a controller that does not send its clock
            self._observe_clock(
                sent_ms, self._wall_clock_ms(), response.controller_time_ms, response.controller_clock_trusted
            )
        if self.fenced and not response.is_fenced:
            log.info("broker %d is unfenced", self._broker_id)
        self.fenced = response.is_fenced

    def _observe_clock(self, sent_ms: float, received_ms: float, controller_ms: int, controller_trusted: bool) -> None:
        verdict = self.clock_skew.observe(sent_ms, received_ms, controller_ms, controller_trusted)
        skew_ms = self.clock_skew.skew_ms
        assert skew_ms is not None, "an observation sets the skew"
        if verdict is False and not self.clock_skew.agrees:
            log.error(
                "broker %d: wall clock is %.0f ms off the controller's (bound %d ms): deleting nothing by "
                "time until they agree",
                self._broker_id,
                -skew_ms,
                self.clock_skew.max_skew_ms,
            )
        elif verdict is False:
            log.error(
                "broker %d: the controller's wall clock is not trusted (most brokers' clocks disagree with "
                "it): deleting nothing by time until they agree",
                self._broker_id,
            )
        elif verdict is True:
            log.info(
                "broker %d: wall clock agrees with the controller's (%.0f ms off), whose clock most brokers "
                "agree with: time-based retention on",
                self._broker_id,
                -skew_ms,
            )

    async def _run(self) -> None:
        last_answer = time.monotonic()
        while True:
            try:
                if self.broker_epoch is None:
                    await self._register()
                self._wake.clear()  # a change from here on is in this heartbeat or wakes the next
                await self._heartbeat()
                last_answer = time.monotonic()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._heartbeat_interval_s)
                except TimeoutError:
                    pass
            except RaftlogError as exc:
                if exc.error in (Errors.STALE_BROKER_EPOCH, Errors.UNKNOWN_BROKER):
                    self.broker_epoch = None  # the controller lost or replaced us: register again
                silent_s = time.monotonic() - last_answer
                if silent_s > self._session_timeout_s:  # the controller will fence us, or has
                    log.warning("broker %d: no heartbeat answered for %.1f s: %s", self._broker_id, silent_s, exc)
                    last_answer = time.monotonic()  # say it again one session later
                else:
                    log.debug("broker %d: %s", self._broker_id, exc)
                await asyncio.sleep(RETRY_BACKOFF_S)
            except Exception as exc:  # noqa: BLE001 - without heartbeats the broker would stay fenced for good
                self._supervisor.survived("broker-heartbeat", exc)
                await asyncio.sleep(RETRY_BACKOFF_S)
