"""Topic-level configs: Kafka's names, types, checks, and the broker defaults behind them.

A topic's effective value of a key is, in order: the topic's own dynamic value, the
cluster-wide dynamic broker default of the matching broker key, the node's static broker
config, the built-in default (as Kafka resolves them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class TopicConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TopicConfigKey:
    name: str
    kind: type  # int, float, bool, str, list
    default: Any
    broker_key: str | None = None  # the broker config that supplies the default
    check: Callable[[Any], str | None] | None = None  # returns an error message or None


def _at_least(minimum: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= minimum else f"must be >= {minimum}"


def _choice(*options: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _policy(values: list[str]) -> str | None:
    return None if values and not set(values) - {"delete", "compact"} else "must be delete and/or compact"


def _throttled_replicas(values: list[str]) -> str | None:
    """Kafka's format: "*" (every replica) or partition:broker pairs, "0:1,0:2,1:3"."""
    if values == ["*"]:
        return None
    for item in values:
        partition, _, broker = item.partition(":")
        if not (partition.strip().isdigit() and broker.strip().isdigit()):
            return f"must be * or partition:broker pairs such as 0:1,1:2 (not {item!r})"
    return None


_KEYS = [
    TopicConfigKey("cleanup.policy", list, ["delete"], "log.cleanup.policy", _policy),
    TopicConfigKey("retention.ms", int, 604800000, None, _at_least(-1)),
    TopicConfigKey("retention.bytes", int, -1, "log.retention.bytes", _at_least(-1)),
    TopicConfigKey("segment.bytes", int, 1073741824, "log.segment.bytes", _at_least(14)),
    TopicConfigKey("segment.ms", int, 604800000, "log.roll.ms", _at_least(1)),
    TopicConfigKey("min.insync.replicas", int, 1, "min.insync.replicas", _at_least(1)),
    TopicConfigKey("unclean.leader.election.enable", bool, False, "unclean.leader.election.enable"),
    TopicConfigKey("max.message.bytes", int, 1048588, "message.max.bytes", _at_least(0)),
    TopicConfigKey("delete.retention.ms", int, 86400000, "log.cleaner.delete.retention.ms", _at_least(0)),
    TopicConfigKey(
        "min.cleanable.dirty.ratio",
        float,
        0.5,
        "log.cleaner.min.cleanable.ratio",
        lambda v: None if 0 <= v <= 1 else "must be 0..1",
    ),
    TopicConfigKey("flush.messages", int, 1, "log.flush.interval.messages", _at_least(1)),
    TopicConfigKey("flush.ms", int, 0, "log.flush.interval.ms", _at_least(0)),
    TopicConfigKey("index.interval.bytes", int, 4096, "log.index.interval.bytes", _at_least(0)),
    TopicConfigKey(
        "message.timestamp.type",
        str,
        "CreateTime",
        "log.message.timestamp.type",
        _choice("CreateTime", "LogAppendTime"),
    ),
    TopicConfigKey(
        "compression.type",
        str,
        "producer",
        "compression.type",
        _choice("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
    ),
    # Which replicas the brokers' leader/follower.replication.throttled.rate apply to.
    TopicConfigKey("leader.replication.throttled.replicas", list, [], None, _throttled_replicas),
    TopicConfigKey("follower.replication.throttled.replicas", list, [], None, _throttled_replicas),
]
TOPIC_SCHEMA: dict[str, TopicConfigKey] = {key.name: key for key in _KEYS}


def _parse(key: TopicConfigKey, raw: str) -> Any:
    text = str(raw).strip()
    try:
        if key.kind is list:
            return [item.strip() for item in text.split(",") if item.strip()]
        if key.kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        return key.kind(text)
    except ValueError:
        raise TopicConfigError(f"{key.name}: {raw!r} is not a valid {key.kind.__name__}") from None


def parse_topic_value(name: str, raw: str) -> Any:
    """A topic config's canonical text (as validate_topic_config returns it) -> its typed value."""
    return _parse(TOPIC_SCHEMA[name], raw)


def canonical(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def validate_topic_config(name: str, raw: str) -> str:
    """Checks one topic config value; returns its canonical text."""
    key = TOPIC_SCHEMA.get(name)
    if key is None:
        raise TopicConfigError(f"{name!r} is not a topic config (known: {', '.join(sorted(TOPIC_SCHEMA))})")
    value = _parse(key, raw)
    problem = key.check(value) if key.check else None
    if problem:
        raise TopicConfigError(f"{name}: {raw!r} {problem}")
    return canonical(value)


def _broker_default(key: TopicConfigKey, broker_values: Mapping[str, Any]) -> Any | None:
    if key.name == "retention.ms":
        # Kafka: log.retention.ms wins over log.retention.hours when set.
        ms = broker_values.get("log.retention.ms")
        if ms not in (None, -1, "-1"):
            return int(ms)
        hours = broker_values.get("log.retention.hours")
        return None if hours is None else int(hours) * 3600 * 1000
    if key.broker_key and key.broker_key in broker_values:
        return broker_values[key.broker_key]
    return None


def effective_topic_config(
    topic_values: Mapping[str, str], broker_values: Mapping[str, Any]
) -> dict[str, tuple[str, str]]:
    """name -> (canonical value, source) for every topic key.

    broker_values holds the broker-level values in force (static config overlaid with the
    dynamic cluster default); their source is reported as DEFAULT_CONFIG-derived.
    """
    result = {}
    for key in _KEYS:
        if key.name in topic_values:
            result[key.name] = (topic_values[key.name], "DYNAMIC_TOPIC_CONFIG")
            continue
        inherited = _broker_default(key, broker_values)
        if inherited is not None:
            value = inherited if not isinstance(inherited, str) else _parse(key, inherited)
            result[key.name] = (canonical(value), "DEFAULT_BROKER_CONFIG")
        else:
            result[key.name] = (canonical(key.default), "DEFAULT_CONFIG")
    return result
