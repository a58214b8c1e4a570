"""LogConfig: the topic configs the storage engine obeys, with Kafka's names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LogConfig:
    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * 24 * 3600 * 1000
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * 24 * 3600 * 1000  # -1: keep forever
    retention_bytes: int = -1  # -1: no size bound
    cleanup_policy: tuple[str, ...] = ("delete",)
    delete_retention_ms: int = 24 * 3600 * 1000
    min_cleanable_dirty_ratio: float = 0.5
    # Durability: an append is fsynced before it counts as written when either bound is hit.
    # flush.messages=1 (the default here, unlike Kafka's) fsyncs every append, with group commit.
    flush_messages: int = 1
    flush_ms: int = 0
    max_message_bytes: int = 1048588

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy

    @classmethod
    def from_topic_configs(cls, configs: Mapping[str, str]) -> LogConfig:
        """From topic config values (strings, as raftlog.topic_config resolves them)."""
        get = configs.get
        defaults = cls()
        return cls(
            segment_bytes=int(get("segment.bytes", defaults.segment_bytes)),
            segment_ms=int(get("segment.ms", defaults.segment_ms)),
            index_interval_bytes=int(get("index.interval.bytes", defaults.index_interval_bytes)),
            retention_ms=int(get("retention.ms", defaults.retention_ms)),
            retention_bytes=int(get("retention.bytes", defaults.retention_bytes)),
            cleanup_policy=tuple(p.strip() for p in str(get("cleanup.policy", "delete")).split(",") if p.strip()),
            delete_retention_ms=int(get("delete.retention.ms", defaults.delete_retention_ms)),
            min_cleanable_dirty_ratio=float(get("min.cleanable.dirty.ratio", defaults.min_cleanable_dirty_ratio)),
            flush_messages=int(get("flush.messages", defaults.flush_messages)),
            flush_ms=int(get("flush.ms", defaults.flush_ms)),
            max_message_bytes=int(get("max.message.bytes", defaults.max_message_bytes)),
        )
