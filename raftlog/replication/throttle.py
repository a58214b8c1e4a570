"""Replication throttles (Kafka's replication quotas, KIP-73), applied in the replica fetch path.

Which replicas: a topic's `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas`
("*" or partition:broker pairs). How fast: the broker's `leader.replication.throttled.rate` /
`follower.replication.throttled.rate` (bytes per second, for all its throttled replicas together;
per-broker dynamic value, else the cluster default, else the static config). As in Kafka, only
replication to a replica *out of the ISR* is throttled: a replica that is in sync (every replica of
a partition that is not moving, once caught up) is never slowed, so acks=all latency does not
depend on a throttle.

- Leader side (this broker leads a partition listed as `p:<this broker>` in the leader list): a
  ReplicaFetch from an out-of-sync follower gets at most the bucket's available bytes (whole
  batches: at least one when any are available), nothing while the bucket is empty.
- Follower side (`p:<this broker>` in the follower list, this broker out of the partition's ISR):
  the fetcher leaves the partition out of its fetch while the bucket is empty, otherwise asks for
  at most the bucket's bytes (`partition_max_bytes`, shared among its throttled partitions), and
  pays for what it receives.

The bucket refills at the rate up to one second's worth and may go below zero (a batch is never
split), so over a move the rate averages the throttle; the debt is paid before the next bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from raftlog.config import REPLICATION_THROTTLE_UNLIMITED

LEADER_RATE_KEY = "leader.replication.throttled.rate"
FOLLOWER_RATE_KEY = "follower.replication.throttled.rate"
LEADER_REPLICAS_KEY = "leader.replication.throttled.replicas"
FOLLOWER_REPLICAS_KEY = "follower.replication.throttled.replicas"
BURST_S = 1.0  # the bucket holds at most this many seconds of its rate


class TokenBucket:
    """Bytes at `rate_bytes_per_s`, holding at most BURST_S of them; None is unlimited."""

    def __init__(self, clock_s: Callable[[], float] = time.monotonic) -> None:
        self._clock_s = clock_s
        self.rate_bytes_per_s: int | None = None
        self._tokens = 0.0
        self._updated_s = clock_s()
        self.taken_bytes = 0  # every byte paid for, throttled or not yet limited

    def set_rate(self, rate_bytes_per_s: int | None) -> None:
        if rate_bytes_per_s == self.rate_bytes_per_s:
            return
        self._refill()
        self.rate_bytes_per_s = rate_bytes_per_s
        if rate_bytes_per_s is not None:
            self._tokens = min(self._tokens, rate_bytes_per_s * BURST_S)

    def _refill(self) -> None:
        now_s = self._clock_s()
        if self.rate_bytes_per_s is not None:
            capacity = self.rate_bytes_per_s * BURST_S
            self._tokens = min(capacity, self._tokens + (now_s - self._updated_s) * self.rate_bytes_per_s)
        self._updated_s = now_s

    def available(self) -> float | None:
        """Bytes that may go now (<= 0: none until the debt is paid); None: no limit."""
        if self.rate_bytes_per_s is None:
            return None
        self._refill()
        return self._tokens

    def take(self, byte_count: int) -> None:
        assert byte_count >= 0, f"a bucket pays for bytes sent, not {byte_count}"
        self.taken_bytes += byte_count
        if self.rate_bytes_per_s is not None:
            self._refill()
            self._tokens -= byte_count


def parse_throttled_replicas(values: list[str] | tuple[str, ...]) -> frozenset[tuple[int, int]] | None:
    """(partition, broker) pairs of a throttled-replicas config; None means every replica ("*")."""
    if list(values) == ["*"]:
        return None
    pairs = set()
    for item in values:
        partition, _, broker = item.partition(":")
        pairs.add((int(partition), int(broker)))
    return frozenset(pairs)


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """What this broker throttles, as of one metadata offset."""

    leader_rate: int | None
    follower_rate: int | None
    leader_replicas: dict[str, frozenset[tuple[int, int]] | None]  # topic -> pairs (None: all)
    follower_replicas: dict[str, frozenset[tuple[int, int]] | None]

    @staticmethod
    def _listed(table, topic: str, partition: int, broker_id: int) -> bool:
        if topic not in table:
            return False
        pairs = table[topic]
        return pairs is None or (partition, broker_id) in pairs

    def leader_throttled(self, topic: str, partition: int, broker_id: int) -> bool:
        return self.leader_rate is not None and self._listed(self.leader_replicas, topic, partition, broker_id)

    def follower_throttled(self, topic: str, partition: int, broker_id: int) -> bool:
        return self.follower_rate is not None and self._listed(self.follower_replicas, topic, partition, broker_id)


NO_THROTTLE = ThrottleConfig(None, None, {}, {})


def _rate(raw) -> int | None:
    rate = int(raw)
    return None if rate >= REPLICATION_THROTTLE_UNLIMITED else rate


def throttle_config(
    broker_id: int, static: dict, broker_dynamic: dict[str, str], default_dynamic: dict[str, str], topic_configs
) -> ThrottleConfig:
    """From the node's static config, this broker's and the cluster's dynamic broker configs, and
    (topic, its dynamic configs) pairs."""

    def rate(key: str) -> int | None:
        for source in (broker_dynamic, default_dynamic):
            if key in source:
                return _rate(source[key])
        return _rate(static[key])

    leader: dict[str, frozenset[tuple[int, int]] | None] = {}
    follower: dict[str, frozenset[tuple[int, int]] | None] = {}
    for topic, configs in topic_configs:
        for key, table in ((LEADER_REPLICAS_KEY, leader), (FOLLOWER_REPLICAS_KEY, follower)):
            values = [v.strip() for v in configs.get(key, "").split(",") if v.strip()]
            if values:
                table[topic] = parse_throttled_replicas(values)
    return ThrottleConfig(rate(LEADER_RATE_KEY), rate(FOLLOWER_RATE_KEY), leader, follower)


class ReplicationThrottles:
    """A broker's two buckets and the throttle config in force (rebuilt when the metadata moves)."""

    def __init__(self, broker_id: int, clock_s: Callable[[], float] = time.monotonic) -> None:
        self.broker_id = broker_id
        self.leader = TokenBucket(clock_s)
        self.follower = TokenBucket(clock_s)
        self.throttled_bytes = {"leader": 0, "follower": 0}  # bytes sent/fetched under a throttle
        self._config: ThrottleConfig | None = None
        self._config_offset = -1

    def update(self, offset: int, build: Callable[[], ThrottleConfig]) -> ThrottleConfig:
        if self._config is None or offset != self._config_offset:
            self._config, self._config_offset = build(), offset
            self.leader.set_rate(self._config.leader_rate)
            self.follower.set_rate(self._config.follower_rate)
        return self._config

    def leader_allowance(self) -> float | None:
        return self.leader.available()

    def leader_sent(self, byte_count: int) -> None:
        self.leader.take(byte_count)
        self.throttled_bytes["leader"] += byte_count

    def follower_received(self, byte_count: int) -> None:
        self.follower.take(byte_count)
        self.throttled_bytes["follower"] += byte_count
