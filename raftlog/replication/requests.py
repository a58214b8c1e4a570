"""Produce, fetch, replica fetch, list offsets and epoch end offsets against the ReplicaManager's partitions.

Errors are per partition (Kafka's model): one bad partition does not fail the request.
Long polls wait on the manager's shared notifier; the token is taken before reading, so a
notification can never slip through unseen, even though reading many partitions yields to the
event loop every YIELD_EVERY_PARTITIONS (raftlog/limits.py caps how many one request may name).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from raftlog.errors import RaftlogError
from raftlog.limits import FETCH_MAX_WAIT_CAP_MS as MAX_WAIT_CAP_MS
from raftlog.limits import MAX_PARTITIONS_PER_DATA_REQUEST
from raftlog.log.record_batch import check_uncompressed_size
from raftlog.replication.manager import FetchSession, FetchSessionEntry, ReplicaManager
from raftlog.replication.partition import Partition
from raftlog.tasks import yield_every
from raftlog.v1 import broker_pb2, replication_pb2

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
VALID_ACKS = (-1, 0, 1)


def _check_partition_count(what: str, count: int) -> None:
    if count > MAX_PARTITIONS_PER_DATA_REQUEST:
        raise RaftlogError(
            "INVALID_REQUEST",
            f"{what} names {count} partitions; at most {MAX_PARTITIONS_PER_DATA_REQUEST} are allowed in one request",
        )


async def produce(manager: ReplicaManager, request: broker_pb2.ProduceRequest) -> broker_pb2.ProduceResponse:
    _check_partition_count("Produce", len(request.partitions))
    if request.acks not in VALID_ACKS:
        raise RaftlogError("INVALID_REQUIRED_ACKS", f"acks must be -1 (all), 0 or 1, not {request.acks}")
    timeout_ms = request.timeout_ms if request.timeout_ms > 0 else 30_000
    results = await asyncio.gather(*(_produce_one(manager, request.acks, timeout_ms, p) for p in request.partitions))
    return broker_pb2.ProduceResponse(results=results)


async def _produce_one(
    manager: ReplicaManager, acks: int, timeout_ms: int, data: broker_pb2.PartitionRecords
) -> broker_pb2.PartitionProduceResult:
    result = broker_pb2.PartitionProduceResult(topic=data.topic, partition=data.partition, log_append_time_ms=-1)
    try:
        partition = manager.partition_by_name(data.topic, data.partition)
        settings = manager.topic_settings(data.topic)
        max_bytes = settings.log.max_message_bytes
        if len(data.records) > max_bytes:
            raise RaftlogError("MESSAGE_TOO_LARGE", f"{len(data.records)} bytes exceed max.message.bytes={max_bytes}")
        check_uncompressed_size(data.records, max_bytes)  # consumers must not get a bomb to inflate
        outcome = await partition.append_as_leader(
            data.records, acks, timeout_ms, settings.min_insync_replicas, manager.replica_lag_time_max_ms()
        )
        result.base_offset, result.log_start_offset = outcome.base_offset, outcome.log_start_offset
        if manager.metrics:
            manager.metrics.produced(data.topic, len(data.records), outcome.record_count)
    except RaftlogError as exc:
        result.error_reason, result.error_message = exc.reason, exc.message
    return result


def _error_result(cls, data, exc: RaftlogError):
    return cls(topic=data.topic, partition=data.partition, error_reason=exc.reason, error_message=exc.message)


async def _read_consumer(manager: ReplicaManager, request: broker_pb2.FetchRequest) -> tuple[list, int, bool]:
    results, total_bytes, errors = [], 0, False
    budget = request.max_bytes if request.max_bytes > 0 else 50 * 1024 * 1024
    for index, data in enumerate(request.partitions):
        await yield_every(index)
        try:
            partition = manager.partition_by_name(data.topic, data.partition)
            max_bytes = min(data.partition_max_bytes or budget, max(budget - total_bytes, 1))
            records, high_wm, log_start = partition.read_for_consumer(
                data.fetch_offset, max_bytes, data.current_leader_epoch
            )
            total_bytes += len(records)
            if manager.metrics and records:
                manager.metrics.fetched(data.topic, len(records))
            results.append(
                broker_pb2.FetchPartitionResult(
                    topic=data.topic,
                    partition=data.partition,
                    high_watermark=high_wm,
                    log_start_offset=log_start,
                    records=records,
                )
            )
        except RaftlogError as exc:
            errors = True
            results.append(_error_result(broker_pb2.FetchPartitionResult, data, exc))
    return results, total_bytes, errors


async def fetch(manager: ReplicaManager, request: broker_pb2.FetchRequest) -> broker_pb2.FetchResponse:
    _check_partition_count("Fetch", len(request.partitions))
    results = await _long_poll(
        manager, request.max_wait_ms, max(1, request.min_bytes), lambda: _read_consumer(manager, request)
    )
    return broker_pb2.FetchResponse(results=results)


async def _long_poll(
    manager: ReplicaManager,
    max_wait_ms: int,
    min_bytes: int,
    read,
    answer_by: Callable[[], float | None] = lambda: None,
) -> list:
    """answer_by: a monotonic time read() may set after which the poll answers even with less
    than min_bytes (None: the deadline)."""
    deadline = time.monotonic() + min(max(max_wait_ms, 0), MAX_WAIT_CAP_MS) / 1000.0
    while True:
        token = manager.changed.token()
        # A notification while read() yields is not lost: the token was taken before it.
        results, total_bytes, stop = await read()
        early = answer_by()
        remaining_s = (deadline if early is None else min(deadline, early)) - time.monotonic()
        if stop or total_bytes >= min_bytes or remaining_s <= 0:
            return results
        await manager.changed.wait(token, remaining_s)


@dataclass
class _ReplicaPoll:
    """What one replica fetch's long poll carries from round to round."""

    answered: dict[int, replication_pb2.ReplicaFetchResult] = field(default_factory=dict)  # by position
    positions: dict[tuple[bytes, int], int] | None = None  # partition -> position in the request
    seen_sequence: int | None = None  # the notifier's sequence when the last round began
    started_at: float = field(default_factory=time.monotonic)
    answer_by: float | None = None  # set when news the request does not ask for came (_news_not_asked)


def _news_not_asked(manager: ReplicaManager, request, poll: _ReplicaPoll, session: FetchSession) -> bool:
    """Whether a partition notified since the last round is led here, replicated by this
    follower, and not named by any of its fetches in this leadership (a partition just created,
    or led here anew): the follower's waiting fetch does not ask for it, and its next one will.
    An idle fetch waits long (the follower's REPLICA_FETCH_IDLE_MAX_WAIT_MS), so it is answered
    early for such news."""
    if poll.seen_sequence is None:
        return False
    sources = manager.changed.sources_since(poll.seen_sequence)
    for source in sources or ():
        if (
            isinstance(source, Partition)
            and source.is_leader
            and source.info is not None
            and request.replica_id in source.info.replicas
        ):
            key = (source.topic_id, source.index)
            if session.named.get(key) != source.leader_epoch and key not in (poll.positions or {}):
                return True
    return False


def _positions_to_read(manager: ReplicaManager, request, poll: _ReplicaPoll) -> Iterable[int]:
    """Every position on a poll's first round; after that only the partitions notified since the
    last round began (every one if the notifier's journal does not reach back that far, or a
    notification named no partition)."""
    everything = range(len(request.partitions))
    if poll.positions is None or poll.seen_sequence is None:
        return everything
    sources = manager.changed.sources_since(poll.seen_sequence)
    if sources is None or not all(isinstance(source, Partition) for source in sources):
        return everything
    named = {(source.topic_id, source.index) for source in sources if isinstance(source, Partition)}
    return sorted(poll.positions[key] for key in named if key in poll.positions)


async def _read_replica(
    manager: ReplicaManager, request: replication_pb2.ReplicaFetchRequest, poll: _ReplicaPoll
) -> tuple[list, int, bool]:
    """One round of a replica fetch's long poll. poll.answered: this poll's results so far, by
    position in the request (a later round replaces what it re-reads). A round after the first
    reads only the partitions notified since the previous round began (`_positions_to_read`).

    A partition whose answer this follower already has is left out (the follower's fetch
    session, as Kafka's incremental fetch, KIP-227): its last answer was empty, for the same
    fetch position and epochs, and the partition's version has not moved since (nothing a
    fetch would answer has changed). So a follower of thousands of idle partitions costs a
    lookup each, not a read and a result each, and its answer carries only what moved. Each is
    read again at least every fetch-session refresh (its fetch keeps the follower in the ISR;
    an answer the follower dropped reaches it then)."""
    # Checked on every round of the long poll: the follower may re-register while we wait.
    manager.check_replica_epoch(request.replica_id, request.broker_epoch)
    throttle = manager.throttle_config()
    session = manager.fetch_session(request.replica_id, request.broker_epoch)
    now = time.monotonic()
    fresh_after = now - manager.fetch_session_refresh_s()
    total_bytes, stop = 0, False
    sequence = manager.changed.sequence  # before reading: a change during this round is read next round
    if poll.answer_by is None and _news_not_asked(manager, request, poll, session):
        # Not at once: a follower that never names it (its replica offline) would spin.
        poll.answer_by = poll.started_at + int(manager.config["replica.fetch.wait.max.ms"]) / 1000.0
    positions = _positions_to_read(manager, request, poll)
    first_round = poll.positions is None
    if poll.positions is None:
        poll.positions = {}
    for count, index in enumerate(positions):
        await yield_every(count)
        data = request.partitions[index]
        key = (data.topic_id, data.partition)
        if first_round:
            poll.positions[key] = index
            session.named[key] = data.current_leader_epoch
        seen = session.entries.get(key)
        if (
            seen is not None
            and seen.read_at > fresh_after
            and seen.partition.version == seen.version
            and seen.asked == (data.fetch_offset, data.last_fetched_epoch, data.current_leader_epoch)
            and manager.partitions.get(key) is seen.partition
        ):
            continue
        session.entries.pop(key, None)
        result = replication_pb2.ReplicaFetchResult(topic_id=data.topic_id, partition=data.partition)
        try:
            partition = manager.partition_by_id(data.topic_id, data.partition)
            version = partition.version
            max_bytes = request.max_bytes or 16 * 1024 * 1024
            if data.partition_max_bytes > 0:  # the follower's own throttle
                max_bytes = min(max_bytes, data.partition_max_bytes)
            # Kafka's leader-side replication quota: only a throttled replica that is out of sync
            # (a replica asked to join counts for the high watermark already: not throttled).
            throttled = request.replica_id not in partition.maximal_isr and throttle.leader_throttled(
                partition.topic, partition.index, manager.broker_id
            )
            if throttled:
                allowance = manager.throttles.leader_allowance()
                if allowance is not None:
                    max_bytes = min(max_bytes, max(0, int(allowance)))
            outcome = partition.read_for_follower(
                request.replica_id,
                data.fetch_offset,
                data.last_fetched_epoch,
                data.current_leader_epoch,
                max_bytes,
            )
            if throttled:
                manager.throttles.leader_sent(len(outcome.records))
            result.high_watermark, result.log_start_offset = outcome.high_watermark, outcome.log_start_offset
            result.records, result.leader_epoch = outcome.records, outcome.leader_epoch
            total_bytes += len(outcome.records)
            if outcome.diverging_epoch is not None:
                result.diverging_epoch.epoch, result.diverging_epoch.end_offset = outcome.diverging_epoch
                stop = True
            elif not outcome.records and not throttled:
                asked = (data.fetch_offset, data.last_fetched_epoch, data.current_leader_epoch)
                session.entries[key] = FetchSessionEntry(partition, version, asked, now)
        except RaftlogError as exc:
            result.error_reason = exc.reason
            stop = True
        poll.answered[index] = result
    poll.seen_sequence = sequence
    return list(poll.answered.values()), total_bytes, stop


async def replica_fetch(
    manager: ReplicaManager, request: replication_pb2.ReplicaFetchRequest
) -> replication_pb2.ReplicaFetchResponse:
    if request.cluster_id != manager.cluster_id:
        raise RaftlogError("INCONSISTENT_CLUSTER_ID", f"fetch for cluster {request.cluster_id!r}")
    poll = _ReplicaPoll()
    results = await _long_poll(
        manager, request.max_wait_ms, 1, lambda: _read_replica(manager, request, poll), lambda: poll.answer_by
    )
    return replication_pb2.ReplicaFetchResponse(results=results)


async def list_offsets(
    manager: ReplicaManager, request: broker_pb2.ListOffsetsRequest
) -> broker_pb2.ListOffsetsResponse:
    _check_partition_count("ListOffsets", len(request.partitions))
    response = broker_pb2.ListOffsetsResponse()
    for index, data in enumerate(request.partitions):
        await yield_every(index)
        try:
            response.results.append(_list_offset(manager, data))
        except RaftlogError as exc:
            response.results.append(_error_result(broker_pb2.ListOffsetsResult, data, exc))
    return response


def _list_offset(manager: ReplicaManager, data: broker_pb2.ListOffsetsPartition) -> broker_pb2.ListOffsetsResult:
    partition = manager.partition_by_name(data.topic, data.partition)
    if not partition.is_leader:
        raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {manager.broker_id} does not lead {partition.name}")
    result = broker_pb2.ListOffsetsResult(
        topic=data.topic, partition=data.partition, timestamp=-1, leader_epoch=partition.leader_epoch
    )
    if data.timestamp == EARLIEST_TIMESTAMP:
        result.offset = partition.log.log_start_offset
    elif data.timestamp == LATEST_TIMESTAMP:
        result.offset = partition.high_watermark
    elif data.timestamp < 0:
        raise RaftlogError("INVALID_REQUEST", f"timestamp {data.timestamp} is not -2, -1 or a time in ms")
    else:
        found = partition.log.offset_for_timestamp(data.timestamp)
        if found is None or found[0] >= partition.high_watermark:
            result.offset = -1
        else:
            result.offset, result.timestamp = found
    return result


async def epoch_end_offsets(
    manager: ReplicaManager, partitions: list[tuple[str, int, int, int]]
) -> list[tuple[int, int] | RaftlogError]:
    """For each (topic, partition, current leader epoch, leader epoch): (epoch, end offset) from
    the partition's leader (Partition.epoch_end_offset), or the error of that partition."""
    _check_partition_count("OffsetForLeaderEpoch", len(partitions))
    answers: list[tuple[int, int] | RaftlogError] = []
    for index, (topic, number, current_leader_epoch, leader_epoch) in enumerate(partitions):
        await yield_every(index)
        try:
            answers.append(
                manager.partition_by_name(topic, number).epoch_end_offset(leader_epoch, current_leader_epoch)
            )
        except RaftlogError as exc:
            answers.append(exc)
    return answers
