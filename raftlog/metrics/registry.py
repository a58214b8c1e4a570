"""One registry per node: request counters and latencies, plus gauges read at scrape time.

Gauges that mirror state owned elsewhere (Raft term, commit index, ...) are not kept up to
date by the owners; a collector reads them when Prometheus scrapes, so the hot paths pay
nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


MetricFamily = GaugeMetricFamily | CounterMetricFamily


class _SnapshotCollector(Collector):
    """Yields gauge families computed by a callable at scrape time."""

    def __init__(self, produce: Callable[[], Iterable[MetricFamily]]):
        self._produce = produce

    def collect(self):
        yield from self._produce()


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # CPU, memory, open files (process_*) and the Python version, as prometheus-client's default
        # registry has them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter("raftlog_requests", "Requests received, per API", ["api"], registry=self.registry)
        self.failed_requests = Counter(
            "raftlog_failed_requests",
            "Requests that failed, per API and reason",
            ["api", "reason"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "raftlog_request_latency_seconds",
            "Request latency, per API",
            ["api"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.request_queue_size = Gauge(
            "raftlog_request_queue_size", "Requests being handled right now", registry=self.registry
        )
        self.raft_leader_changes = Counter(
            "raftlog_raft_leader_changes", "Times this node saw the Raft leader change", registry=self.registry
        )
        self.bytes_in = Counter("raftlog_bytes_in", "Bytes produced, per topic", ["topic"], registry=self.registry)
        self.bytes_out = Counter(
            "raftlog_bytes_out", "Bytes fetched by consumers, per topic", ["topic"], registry=self.registry
        )
        self.messages_in = Counter(
            "raftlog_messages_in", "Records produced, per topic", ["topic"], registry=self.registry
        )
        self.background_errors = Counter(
            "raftlog_background_errors",
            "Unexpected errors that a survivable background loop logged and went on after, per loop",
            ["loop"],
            registry=self.registry,
        )
        self.group_rebalances = Counter(
            "raftlog_group_rebalances", "Group epoch changes written by this coordinator", registry=self.registry
        )
        self.group_rebalance_seconds = Histogram(
            "raftlog_group_rebalance_seconds",
            "From a group epoch change until the group is stable again",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.offset_commits = Counter(
            "raftlog_offset_commits", "Offsets committed (partitions)", registry=self.registry
        )
        self.offset_commit_failures = Counter(
            "raftlog_offset_commit_failures", "OffsetCommit requests that failed", registry=self.registry
        )
        self.offset_commit_latency = Histogram(
            "raftlog_offset_commit_latency_seconds",
            "OffsetCommit on the coordinator, written with acks=all",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        # Audit (raftlog/api/authorization.py): refusals and ACL changes, each also one log line.
        self.authorization_denied = Counter(
            "raftlog_authorization_denied",
            "Requests (or parts of them) refused by the authorizer, per API, operation and resource type",
            ["api", "operation", "resource_type"],
            registry=self.registry,
        )
        self.acl_changes = Counter(
            "raftlog_acl_changes", "ACL bindings added or removed through this node", ["change"], registry=self.registry
        )
        # Audit (raftlog/audit.py): refused authentications and credential changes.
        self.authentication_failures = Counter(
            "raftlog_authentication_failures",
            "Refused authentications (no credentials, a wrong password, a bad or expired token), per listener",
            ["listener", "mechanism"],
            registry=self.registry,
        )
        self.credential_changes = Counter(
            "raftlog_credential_changes",
            "SCRAM credentials set or deleted through this node, per operation",
            ["operation"],
            registry=self.registry,
        )
        self._server: Any = None  # prometheus-client's WSGI server once serving

    def group_rebalanced(self) -> None:
        self.group_rebalances.inc()

    def group_stable_after(self, elapsed_s: float) -> None:
        self.group_rebalance_seconds.observe(elapsed_s)

    def offsets_committed(self, partitions: int, elapsed_s: float) -> None:
        self.offset_commits.inc(partitions)
        self.offset_commit_latency.observe(elapsed_s)

    def offset_commit_failed(self) -> None:
        self.offset_commit_failures.inc()

    def produced(self, topic: str, byte_count: int, record_count: int) -> None:
        self.bytes_in.labels(topic).inc(byte_count)
        self.messages_in.labels(topic).inc(record_count)

    def fetched(self, topic: str, byte_count: int) -> None:
        self.bytes_out.labels(topic).inc(byte_count)

    def authorization_refused(self, api: str, operation: str, resource_type: str) -> None:
        self.authorization_denied.labels(api, operation, resource_type).inc()

    def acls_changed(self, change: str, count: int) -> None:
        self.acl_changes.labels(change).inc(count)

    def request_started(self, api: str) -> None:
        self.requests.labels(api).inc()
        self.request_queue_size.inc()

    def request_finished(self, api: str, elapsed_s: float, failure_reason: str | None) -> None:
        self.request_queue_size.dec()
        self.request_latency.labels(api).observe(elapsed_s)
        if failure_reason is not None:
            self.failed_requests.labels(api, failure_reason).inc()

    def add_gauges(self, produce: Callable[[], Iterable[MetricFamily]]) -> None:
        self.registry.register(_SnapshotCollector(produce))

    def serve(self, host: str, port: int) -> None:
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


class RaftStatusView(Protocol):
    """What the gauges read of raftlog.raft.RaftStatus (no import of the Raft driver here)."""

    node_id: int
    term: int
    leader_id: int | None
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int


def raft_gauges(status_of: Callable[[], RaftStatusView]) -> Callable[[], Iterable[MetricFamily]]:
    """Gauges of the Raft driver's status: term, indexes, active controller."""

    def produce() -> Iterable[MetricFamily]:
        status = status_of()
        values = [
            ("raftlog_raft_term", "Current Raft term", status.term),
            ("raftlog_raft_commit_index", "Raft commit index", status.commit_index),
            ("raftlog_raft_applied_index", "Raft index applied to the metadata image", status.applied_index),
            ("raftlog_raft_last_index", "Last index in the Raft log", status.last_index),
            ("raftlog_raft_snapshot_index", "Index of the latest Raft snapshot", status.snapshot_index),
            (
                "raftlog_active_controller",
                "1 when this node is the active controller",
                int(status.leader_id == status.node_id),
            ),
        ]
        for name, doc, value in values:
            yield GaugeMetricFamily(name, doc, value=value)

    return produce


def partition_gauges(manager) -> Callable[[], Iterable[MetricFamily]]:
    """Per-partition and cluster-health gauges of a broker's ReplicaManager, read at scrape time.

    under-replicated/offline/under-min-ISR count the partitions this broker leads (offline:
    partitions of the image with no leader, reported by the active controller's view of
    every node, so sum() across nodes over-counts them; use max()).
    """

    def produce() -> Iterable[MetricFamily]:
        labels = ["topic", "partition"]
        start = GaugeMetricFamily("raftlog_log_start_offset", "Log start offset", labels=labels)
        end = GaugeMetricFamily("raftlog_log_end_offset", "Log end offset", labels=labels)
        size = GaugeMetricFamily("raftlog_log_size_bytes", "Bytes on disk", labels=labels)
        lag = GaugeMetricFamily(
            "raftlog_follower_lag", "Records a follower is behind its leader", labels=labels + ["replica"]
        )
        under_replicated = under_min_isr = 0
        for partition in list(manager.partitions.values()):
            if partition.info is None:
                continue
            key = [partition.topic, str(partition.index)]
            start.add_metric(key, partition.log.log_start_offset)
            end.add_metric(key, partition.log.log_end_offset)
            size.add_metric(key, partition.log.size_bytes())
            if partition.is_leader:
                under_replicated += len(partition.isr) < len(partition.info.replicas)
                min_isr = manager.topic_settings(partition.topic).min_insync_replicas
                under_min_isr += len(partition.isr) < min_isr
                for replica, state in partition.followers.items():
                    lag.add_metric(key + [str(replica)], max(0, partition.log.log_end_offset - state.log_end_offset))
        offline = sum(1 for _, p in manager.image.partitions() if p.leader < 0)
        from raftlog.log.partition_log import CorruptionCounter  # noqa: PLC0415

        yield GaugeMetricFamily(
            "raftlog_log_corruptions_detected",
            "Corrupt or torn log tails cut by recovery",
            value=CorruptionCounter.count,
        )
        found = CounterMetricFamily(
            "raftlog_log_corruptions_found", "Corrupt stored batches found, by who found them", labels=["source"]
        )
        found.add_metric(["recovery"], CorruptionCounter.count)
        found.add_metric(["scrubber"], CorruptionCounter.scrubbed)
        found.add_metric(["read"], CorruptionCounter.read)
        yield found
        yield CounterMetricFamily(
            "raftlog_log_corruptions_repaired",
            "Replicas cut before corrupt data that fetched past it again from the leader",
            value=CorruptionCounter.repaired,
        )
        yield from (start, end, size, lag)
        throttles = manager.throttles
        throttled = CounterMetricFamily(
            "raftlog_replication_throttled_bytes",
            "Replication bytes sent (side=leader) or fetched (side=follower) under a replication throttle",
            labels=["side"],
        )
        rate = GaugeMetricFamily(
            "raftlog_replication_throttle_rate_bytes",
            "The replication throttle in force, bytes per second (-1: unlimited)",
            labels=["side"],
        )
        for side, bucket in (("leader", throttles.leader), ("follower", throttles.follower)):
            throttled.add_metric([side], throttles.throttled_bytes[side])
            rate.add_metric([side], -1 if bucket.rate_bytes_per_s is None else bucket.rate_bytes_per_s)
        yield throttled
        yield rate
        yield GaugeMetricFamily(
            "raftlog_under_replicated_partitions", "Led partitions with ISR < replicas", value=under_replicated
        )
        yield GaugeMetricFamily(
            "raftlog_under_min_isr_partitions", "Led partitions with ISR < min.insync.replicas", value=under_min_isr
        )
        yield GaugeMetricFamily("raftlog_offline_partitions", "Partitions without a leader", value=offline)
        brokers = list(manager.image.brokers.values())
        yield GaugeMetricFamily(
            "raftlog_registered_brokers", "Brokers registered in this node's metadata image", value=len(brokers)
        )
        yield GaugeMetricFamily(
            "raftlog_fenced_brokers",
            "Registered brokers fenced in this node's metadata image",
            value=sum(1 for broker in brokers if broker.fenced),
        )

    return produce


def clock_gauges(clock_skew) -> Callable[[], Iterable[MetricFamily]]:
    """This node's wall clock against the active controller's (raftlog/broker/clock_skew.py)."""

    def produce() -> Iterable[MetricFamily]:
        skew_ms = clock_skew.skew_ms
        yield GaugeMetricFamily(
            "raftlog_clock_skew_ms",
            "The active controller's wall clock minus ours (NaN until a heartbeat answered)",
            value=float("nan") if skew_ms is None else skew_ms,
        )
        yield GaugeMetricFamily(
            "raftlog_time_retention_suspended",
            "1 while time-based retention is suspended (our wall clock is off the controller's, or the "
            "controller's is not trusted: most brokers' clocks disagree with it): nothing is deleted by retention.ms",
            value=0.0 if clock_skew.time_retention_allowed else 1.0,
        )

    return produce


def group_gauges(coordinator) -> Callable[[], Iterable[GaugeMetricFamily]]:
    """Per group (of the groups this broker coordinates): state, members, and per committed
    partition the lag in records and in seconds (the age of the oldest unconsumed record), read
    from this broker's replica of the partition (partitions it does not host are left out)."""

    def produce() -> Iterable[GaugeMetricFamily]:
        members = GaugeMetricFamily("raftlog_group_members", "Members of a group", labels=["group"])
        state = GaugeMetricFamily("raftlog_group_state", "1 for the group's current state", labels=["group", "state"])
        lag = GaugeMetricFamily(
            "raftlog_group_lag",
            "Records between the committed offset and the high watermark",
            labels=["group", "topic", "partition"],
        )
        lag_seconds = GaugeMetricFamily(
            "raftlog_group_lag_seconds",
            "Age of the oldest record not yet committed by the group",
            labels=["group", "topic", "partition"],
        )
        for group_id, group_state, member_count, lags in coordinator.group_metrics():
            members.add_metric([group_id], member_count)
            state.add_metric([group_id, group_state], 1)
            for topic, partition, records, seconds in lags:
                lag.add_metric([group_id, topic, str(partition)], records)
                lag_seconds.add_metric([group_id, topic, str(partition)], seconds)
        yield from (members, state, lag, lag_seconds)

    return produce
