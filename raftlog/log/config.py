"""LogConfig: the topic configs the storage engine obeys, typed, with Kafka's names.

Defaults come from the one topic config schema (raftlog.topic_config.TOPIC_SCHEMA); there is no
second copy of them here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftlog.topic_config import TOPIC_SCHEMA, parse_topic_value


def _default(name: str) -> Any:
    value = TOPIC_SCHEMA[name].default
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True, slots=True)
class LogConfig:
    segment_bytes: int = _default("segment.bytes")
    segment_ms: int = _default("segment.ms")
    index_interval_bytes: int = _default("index.interval.bytes")
    retention_ms: int = _default("retention.ms")  # -1: keep forever
    retention_bytes: int = _default("retention.bytes")  # -1: no size bound
    cleanup_policy: tuple[str, ...] = _default("cleanup.policy")
    delete_retention_ms: int = _default("delete.retention.ms")
    min_cleanable_dirty_ratio: float = _default("min.cleanable.dirty.ratio")
    # Durability: an append is fsynced before it counts as written when either bound is hit.
    # flush.messages=1 (the default here, unlike Kafka's) fsyncs every append, with group commit.
    flush_messages: int = _default("flush.messages")
    flush_ms: int = _default("flush.ms")
    max_message_bytes: int = _default("max.message.bytes")

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy

    @classmethod
    def from_topic_configs(cls, configs: Mapping[str, str]) -> LogConfig:
        """From topic config values (canonical strings, as raftlog.topic_config resolves them);
        a key that is absent takes the schema's default."""

        def get(name: str) -> Any:
            value = parse_topic_value(name, configs[name]) if name in configs else TOPIC_SCHEMA[name].default
            return tuple(value) if isinstance(value, list) else value

        return cls(
            segment_bytes=get("segment.bytes"),
            segment_ms=get("segment.ms"),
            index_interval_bytes=get("index.interval.bytes"),
            retention_ms=get("retention.ms"),
            retention_bytes=get("retention.bytes"),
            cleanup_policy=get("cleanup.policy"),
            delete_retention_ms=get("delete.retention.ms"),
            min_cleanable_dirty_ratio=get("min.cleanable.dirty.ratio"),
            flush_messages=get("flush.messages"),
            flush_ms=get("flush.ms"),
            max_message_bytes=get("max.message.bytes"),
        )


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """Everything a broker obeys for one topic, typed, built once per metadata change (no string
    lookups on the produce path): the storage engine's part plus the replication rules."""

    log: LogConfig
    min_insync_replicas: int
    unclean_leader_election_enable: bool

    @classmethod
    def from_topic_configs(cls, configs: Mapping[str, str]) -> TopicSettings:
        def get(name: str) -> Any:
            return parse_topic_value(name, configs[name]) if name in configs else TOPIC_SCHEMA[name].default

        return cls(
            log=LogConfig.from_topic_configs(configs),
            min_insync_replicas=get("min.insync.replicas"),
            unclean_leader_election_enable=get("unclean.leader.election.enable"),
        )
