"""Topic creation, deletion and partition growth as pure functions of the metadata image."""

from __future__ import annotations

import re
import uuid

from raftlog.controller.placement import current_load, place_partitions
from raftlog.errors import RaftlogError
from raftlog.limits import MAX_PARTITIONS_CREATED_PER_REQUEST, MAX_PARTITIONS_PER_TOPIC
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.topic_config import TopicConfigError, validate_topic_config
from raftlog.v1 import metadata_pb2

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


def check_topic_name(name: str) -> None:
    """Kafka's rules: legal characters, at most 249 long, not '.' or '..'."""
    if not name:
        raise RaftlogError("INVALID_TOPIC_EXCEPTION", "topic name is empty")
    if name in (".", ".."):
        raise RaftlogError("INVALID_TOPIC_EXCEPTION", f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise RaftlogError(
            "INVALID_TOPIC_EXCEPTION",
            f"topic name is {len(name)} characters; at most {MAX_TOPIC_NAME_LENGTH} are allowed",
        )
    if not _LEGAL_NAME.match(name):
        raise RaftlogError(
            "INVALID_TOPIC_EXCEPTION",
            f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_' and '-'",
        )


def _colliding_topic(image: MetadataImage, name: str) -> str | None:
    """Kafka refuses names that differ only in '.' versus '_' (they collide in metric names)."""
    normalized = name.replace(".", "_")
    return next((t for t in image.topic_ids if t != name and t.replace(".", "_") == normalized), None)


def validated_configs(configs: dict[str, str]) -> dict[str, str]:
    try:
        return {name: validate_topic_config(name, value) for name, value in configs.items()}
    except TopicConfigError as exc:
        raise RaftlogError("INVALID_CONFIG", str(exc)) from None


def usable_brokers(image: MetadataImage) -> list[int]:
    return sorted(b.broker_id for b in image.brokers.values() if not b.fenced)


def create_topic(
    image: MetadataImage,
    name: str,
    partitions: int,
    replication_factor: int,
    configs: dict[str, str],
    topic_id: bytes | None = None,
) -> list[metadata_pb2.MetadataRecord]:
    check_topic_name(name)
    if name in image.topic_ids:
        raise RaftlogError("TOPIC_ALREADY_EXISTS", f"topic {name!r} already exists")
    collision = _colliding_topic(image, name)
    if collision:
        raise RaftlogError("INVALID_TOPIC_EXCEPTION", f"topic {name!r} collides with existing topic {collision!r}")
    if not 1 <= partitions <= MAX_PARTITIONS_CREATED_PER_REQUEST:
        raise RaftlogError(
            "INVALID_PARTITIONS",
            f"partitions must be 1..{MAX_PARTITIONS_CREATED_PER_REQUEST} in one request, got "
            f"{partitions} (grow the topic further with CreatePartitions, up to "
            f"{MAX_PARTITIONS_PER_TOPIC})",
        )
    config_values = validated_configs(configs)
    replicas_load, leaders_load = current_load(image)
    assignments = place_partitions(usable_brokers(image), partitions, replication_factor, replicas_load, leaders_load)
    topic_id = topic_id or uuid.uuid4().bytes
    new_records = [records.topic(name, topic_id)]
    new_records += [records.partition(topic_id, i, replicas, replicas[0]) for i, replicas in enumerate(assignments)]
    new_records += [records.config("topics", name, key, value) for key, value in sorted(config_values.items())]
    return new_records


def delete_topic(image: MetadataImage, name: str) -> list[metadata_pb2.MetadataRecord]:
    topic = image.topic(name)
    if topic is None:
        raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"topic {name!r} does not exist")
    return [records.remove_topic(topic.topic_id)]


def create_partitions(image: MetadataImage, name: str, total: int) -> list[metadata_pb2.MetadataRecord]:
    """Grows a topic to `total` partitions (Kafka never shrinks a topic)."""
    topic = image.topic(name)
    if topic is None:
        raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"topic {name!r} does not exist")
    current = len(topic.partitions)
    if total <= current:
        raise RaftlogError("INVALID_PARTITIONS", f"topic {name!r} has {current} partitions; the count can only grow")
    if total > MAX_PARTITIONS_PER_TOPIC:
        raise RaftlogError("INVALID_PARTITIONS", f"a topic has at most {MAX_PARTITIONS_PER_TOPIC} partitions")
    if total - current > MAX_PARTITIONS_CREATED_PER_REQUEST:
        raise RaftlogError(
            "INVALID_PARTITIONS",
            f"one request may add at most {MAX_PARTITIONS_CREATED_PER_REQUEST} partitions; "
            f"{name!r} has {current}, {total} asked",
        )
    replication_factor = len(topic.partitions[0].replicas)
    replicas_load, leaders_load = current_load(image)
    assignments = place_partitions(
        usable_brokers(image), total - current, replication_factor, replicas_load, leaders_load
    )
    return [
        records.partition(topic.topic_id, current + i, replicas, replicas[0]) for i, replicas in enumerate(assignments)
    ]
