"""ReplicaFetcher: a follower's pull loop against one leader broker (Kafka's replica fetcher).

Each round asks for the partitions it covers, from their log end, with the epoch of their last
batch: one loop covers the partitions that received records in the last ACTIVE_S, another the
rest (idle ones), so the partitions with traffic are fetched in small requests. The leader answers with records, or with the epoch and
offset where our log diverges from its own, and we truncate there before fetching again.
Each loop sends its fetches on one open stream to the leader (FetchStream).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from raftlog.channels import Peers, error_from_rpc
from raftlog.errors import RaftlogError
from raftlog.limits import REPLICA_FETCH_ERROR_BACKOFF_S as ERROR_BACKOFF_S
from raftlog.limits import REPLICA_FETCH_IDLE_MAX_WAIT_MS, REPLICA_FETCH_MAX_BYTES, REPLICA_FETCH_MAX_WAIT_MS
from raftlog.limits import REPLICA_FETCH_TIMEOUT_S as RPC_TIMEOUT_S
from raftlog.replication.partition import Partition
from raftlog.tasks import yield_every
from raftlog.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger(__name__)

ACTIVE_S = 5.0  # a partition that received records this recently is fetched by the active loop


class FetchStream:
    """A follower's fetches to one leader on one open ReplicaFetchStream call: a request, then
    its answer. Measured with grpcio on this kind of machine, a message each way takes about
    half the time of a unary call (0.26 against 0.55 ms round trip between two processes), and
    two such hops lie on the path of every acks=all write. Any failure (an error status, the
    deadline, the leader ending the call, the caller being cancelled) closes the call: the next
    fetch opens another, so a fetch never reads an answer meant for an earlier one."""

    def __init__(self, channel: grpc.aio.Channel):
        self._stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        self._call: grpc.aio.StreamStreamCall | None = None

    async def fetch(
        self, request: replication_pb2.ReplicaFetchRequest, timeout_s: float
    ) -> replication_pb2.ReplicaFetchResponse:
        """The leader's answer; grpc.RpcError on an error status, TimeoutError after timeout_s,
        EOFError when the leader ended the call."""
        if self._call is None:
            self._call = self._stub.ReplicaFetchStream()
        call = self._call
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    await call.write(request)
                except asyncio.InvalidStateError:  # the call ended (the leader went away) since the last answer
                    raise await _status_error(call) from None
                response = await call.read()
        except BaseException:
            self.close()
            raise
        if response is grpc.aio.EOF:  # the leader's handler returned (an error status raises above)
            self.close()
            raise EOFError("the leader ended the fetch stream")
        return response

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None


async def _status_error(call) -> grpc.aio.AioRpcError:
    """The status an ended call finished with, as the error a unary call would have raised."""
    return grpc.aio.AioRpcError(
        await call.code(), grpc.aio.Metadata(), await call.trailing_metadata(), await call.details()
    )


class ReplicaFetcher:
    def __init__(
        self,
        manager,
        leader_id: int,
        peers: Peers,
        max_wait_ms: int = REPLICA_FETCH_MAX_WAIT_MS,
        max_bytes: int = REPLICA_FETCH_MAX_BYTES,
    ):
        """max_wait_ms, max_bytes: replica.fetch.wait.max.ms and replica.fetch.max.bytes."""
        self._manager = manager
        self._max_wait_ms = max_wait_ms
        self._max_bytes = max_bytes
        self.leader_id = leader_id
        self._peers = peers
        self.partitions: dict[tuple[bytes, int], Partition] = {}
        self._backoff_until: dict[tuple[bytes, int], float] = {}  # partition -> monotonic s
        self._wakeup = asyncio.Event()
        # Partitions that received records in the last ACTIVE_S (key -> monotonic s of the last),
        # fetched by a loop of their own: each round of a fetch names every partition it covers,
        # so the few partitions with traffic must not wait for (nor pay for) a request naming
        # thousands of idle ones. The idle loop's long poll answers as soon as one of them gets
        # records, and that one joins the active loop.
        self._active: dict[tuple[bytes, int], float] = {}
        self._active_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def add(self, partition: Partition) -> None:
        self.partitions[(partition.topic_id, partition.index)] = partition
        self._wakeup.set()

    def remove(self, partition: Partition) -> None:
        self.partitions.pop((partition.topic_id, partition.index), None)
        self._backoff_until.pop((partition.topic_id, partition.index), None)
        self._active.pop((partition.topic_id, partition.index), None)

    def start(self) -> None:
        # Critical: a dead fetcher would leave its partitions behind for good; its rounds survive errors.
        self._tasks = [
            self._manager.supervisor.spawn(
                self._run(active), name=f"replica-fetcher-{self.leader_id}{name}", critical=True
            )
            for active, name in ((False, ""), (True, "-active"))
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _covered(self, active: bool) -> dict[tuple[bytes, int], Partition]:
        """The partitions one of the two loops fetches now. Every partition is always covered by
        at least one: one quiet for ACTIVE_S leaves the active loop only when the idle loop takes
        it back, in the request it is building now (the active loop wakes the idle one for that:
        it may be waiting with nothing to fetch). A partition handed over while the other loop's
        fetch still names it is answered twice; the second answer is dropped (its fetch offset is
        no longer the log end)."""
        for key in [k for k in self._active if k not in self.partitions]:
            del self._active[key]
        quiet_before = time.monotonic() - ACTIVE_S
        if active:
            if any(at < quiet_before for at in self._active.values()):
                self._wakeup.set()
            return {key: self.partitions[key] for key in self._active}
        for key in [k for k, at in self._active.items() if at < quiet_before]:
            del self._active[key]
        return {key: p for key, p in self.partitions.items() if key not in self._active}

    def _mark_active(self, key: tuple[bytes, int]) -> None:
        if key in self.partitions:
            self._active[key] = time.monotonic()
            self._active_wakeup.set()

    async def _run(self, active: bool) -> None:
        stream = FetchStream(self._peers.channel(self.leader_id))
        try:
            await self._fetch_rounds(active, stream)
        finally:
            stream.close()

    async def _fetch_rounds(self, active: bool, stream: FetchStream) -> None:
        while True:
            covered = self._covered(active)
            if not covered:
                wakeup = self._active_wakeup if active else self._wakeup
                wakeup.clear()
                await wakeup.wait()
                continue
            sent, throttled = await self._fetchable(covered)
            allowance = self._manager.throttles.follower.available() if throttled else None
            if allowance is not None and allowance <= 0:
                # Kafka's follower-side quota: throttled replicas wait; the in-sync ones go on.
                sent = {key: p for key, p in sent.items() if key not in throttled}
            # What the bucket holds, shared out among the throttled partitions; whole batches still.
            throttled_max_bytes = max(1, int(allowance) // len(throttled)) if allowance else 0
            max_wait_ms = self._max_wait_ms if active else self._idle_max_wait_ms()
            request, asked = (
                await self._request(sent, throttled, throttled_max_bytes, max_wait_ms) if sent else (None, {})
            )
            if request is None:
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            try:
                response = await stream.fetch(request, RPC_TIMEOUT_S)
            except grpc.RpcError as exc:
                log.debug("fetch from broker %d failed: %s", self.leader_id, error_from_rpc(exc))
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            except (TimeoutError, EOFError) as exc:
                log.debug("fetch from broker %d: %s", self.leader_id, exc or f"no answer within {RPC_TIMEOUT_S} s")
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if throttled:
                received = sum(len(r.records) for r in response.results if (r.topic_id, r.partition) in throttled)
                if received:
                    self._manager.throttles.follower_received(received)
            await self._handle(response, sent, asked)

    async def _fetchable(
        self, covered: dict[tuple[bytes, int], Partition]
    ) -> tuple[dict[tuple[bytes, int], Partition], set[tuple[bytes, int]]]:
        """The covered partitions to fetch now (one that just failed waits out its own backoff;
        the others go on), and those of them under this broker's follower throttle (listed, and
        out of the ISR). A turn of the loop every YIELD_EVERY_PARTITIONS: an idle loop covers
        thousands."""
        config = self._manager.throttle_config()
        broker_id = self._manager.broker_id
        now = time.monotonic()
        sent: dict[tuple[bytes, int], Partition] = {}
        throttled: set[tuple[bytes, int]] = set()
        for count, (key, p) in enumerate(covered.items()):
            await yield_every(count)
            if self._backoff_until.get(key, 0.0) > now:
                continue
            sent[key] = p
            if (
                p.info is not None
                and broker_id not in p.info.isr
                and config.follower_throttled(p.topic, p.index, broker_id)
            ):
                throttled.add(key)
        return sent, throttled

    def _idle_max_wait_ms(self) -> int:
        """The idle loop's long poll: its rounds name thousands of partitions, for nothing while
        they stay idle; one of them getting records ends it at once, and a partition led there
        that it does not name yet ends it after replica.fetch.wait.max.ms (the leader's
        _news_not_asked). At most a quarter of replica.lag.time.max.ms: only a read of a
        partition records this follower's fetch of it."""
        lag_max_ms = self._manager.replica_lag_time_max_ms()
        return max(self._max_wait_ms, min(REPLICA_FETCH_IDLE_MAX_WAIT_MS, lag_max_ms // 4))

    async def _request(
        self,
        sent: dict[tuple[bytes, int], Partition],
        throttled: set[tuple[bytes, int]],
        throttled_max_bytes: int,
        max_wait_ms: int,
    ) -> tuple[replication_pb2.ReplicaFetchRequest | None, dict[tuple[bytes, int], tuple[int, int]]]:
        """The request for the partitions sent, and what each is asked from: (current leader
        epoch, fetch offset), read from the partition once, in the same loop turn as its entry
        (reading it back out of the request's thousands of protobuf entries cost a tenth of an
        idle node). Partitions that left the fetcher while it yielded are left out."""
        broker_epoch = self._manager._broker_epoch()
        if broker_epoch is None:
            return None, {}
        request = replication_pb2.ReplicaFetchRequest(
            cluster_id=self._manager.cluster_id,
            replica_id=self._manager.broker_id,
            broker_epoch=broker_epoch,
            max_wait_ms=max_wait_ms,
            max_bytes=self._max_bytes,
        )
        asked: dict[tuple[bytes, int], tuple[int, int]] = {}
        entries = request.partitions
        for count, (key, p) in enumerate(sent.items()):
            await yield_every(count)
            if self.partitions.get(key) is not p:
                continue
            asked[key] = (p.leader_epoch, p.log.log_end_offset)
            entries.add(
                topic_id=p.topic_id,
                partition=p.index,
                fetch_offset=asked[key][1],
                last_fetched_epoch=p.log.latest_epoch(),
                current_leader_epoch=asked[key][0],
                partition_max_bytes=throttled_max_bytes if key in throttled else 0,
            )
        return (request if asked else None), asked

    async def _handle(
        self, response, sent: dict[tuple[bytes, int], Partition], asked: dict[tuple[bytes, int], tuple[int, int]]
    ) -> None:
        """Applies one response, its partitions side by side (each append waits for its own
        fsync; one after another, a round answering 20 partitions took 20 fsyncs before the next
        fetch told the leader of any of them, and end-to-end delay grew with the partition
        count). An error in one (in the response, or in applying it here) backs off that
        partition only, never the others (Kafka's model)."""
        applying = []
        for count, result in enumerate(response.results):
            await yield_every(count)  # the first answer for thousands of new partitions names each
            key = (result.topic_id, result.partition)
            partition = sent.get(key)
            if partition is None or key not in asked or not self._still_current(key, partition, asked[key]):
                continue
            if result.records:
                self._mark_active(key)
            if not result.records and not result.HasField("diverging_epoch"):
                # No fsync (an error, or only the high watermark): no task for it. Thousands of
                # partitions answer so at once (new ones not yet served by their leader).
                await self._apply_isolated(key, partition, result, asked[key])
            else:
                applying.append(self._apply_isolated(key, partition, result, asked[key]))
        if len(applying) == 1:
            await applying[0]  # no task (and loop turn) for the common case of one partition
        elif applying:
            await asyncio.gather(*applying)

    def _still_current(self, key: tuple[bytes, int], partition: Partition, asked: tuple[int, int]) -> bool:
        """Whether an answer to a fetch asked at (leader epoch, log end) may still be applied."""
        if self.partitions.get(key) is not partition:
            return False  # no longer followed from this leader
        if partition.info is None or partition.info.leader != self.leader_id:
            return False
        epoch_asked, offset_asked = asked
        if partition.leader_epoch != epoch_asked:
            return False  # the epoch moved while the fetch was out: the answer may be stale
        # The log was cut meanwhile (a repair): the answer continues a log end we no longer have.
        return partition.log.log_end_offset == offset_asked

    async def _apply_isolated(
        self, key: tuple[bytes, int], partition: Partition, result, asked: tuple[int, int]
    ) -> None:
        """_apply for one partition, its failure kept to its own backoff. Checked again first:
        side by side, it may start a loop turn after the others were checked (a metadata update
        may have made this broker the leader meanwhile), and nothing yields from this check to
        the append's write."""
        if not self._still_current(key, partition, asked):
            return
        try:
            failed = await self._apply(partition, result)
        except Exception as exc:  # noqa: BLE001 - this partition backs off; the others go on
            if isinstance(exc, RaftlogError):
                log.warning("%s: applying a fetch from %d failed: %s", partition.name, self.leader_id, exc)
            else:
                self._manager.supervisor.survived(f"replica-fetcher-{self.leader_id}", exc)
            failed = True
        if failed:
            self._backoff_until[key] = time.monotonic() + ERROR_BACKOFF_S
        else:
            self._backoff_until.pop(key, None)

    async def _apply(self, partition: Partition, result) -> bool:
        """Applies one partition's result; returns True when it failed (the partition backs off)."""
        if result.error_reason:
            return await self._on_error(partition, result)
        if result.HasField("diverging_epoch"):
            partition.truncate_for_divergence(result.diverging_epoch.epoch, result.diverging_epoch.end_offset)
            await partition.log.persist()  # the lowered recovery point is on disk before new data
        else:
            await partition.append_as_follower(result.records, result.high_watermark, result.log_start_offset)
        return False

    async def _on_error(self, partition: Partition, result) -> bool:
        if result.error_reason == "OFFSET_OUT_OF_RANGE" and partition.log.log_end_offset < result.log_start_offset:
            log.warning(
                "%s: behind the leader's log start %d; restarting from there", partition.name, result.log_start_offset
            )
            partition.truncate_fully_and_start_at(result.log_start_offset)
            await partition.log.persist()
            return False
        error = RaftlogError.from_reason(result.error_reason, f"from broker {self.leader_id}")
        # Retriable errors (a leader change the metadata has not shown here yet) pass by themselves.
        log.log(logging.DEBUG if error.retriable else logging.WARNING, "%s: fetch: %s", partition.name, error)
        return True
