"""Controller decisions as pure functions of the metadata image and a request.

Each returns the metadata records to commit (possibly none) or raises RaftlogError; the
caller proposes the records through Raft. Keeping them pure lets the tests cover every
rule without a quorum.
"""

from __future__ import annotations

from raftlog import config as node_config
from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.v1 import admin_pb2, metadata_pb2

BROKER_RESOURCE = "brokers"
TOPIC_RESOURCE = "topics"


class BrokerSessions:
    """When each broker last heartbeat, in the controller's monotonic milliseconds.

    Not replicated: a newly active controller starts every session afresh (as KRaft does),
    so a failover never fences a healthy broker.
    """

    def __init__(self) -> None:
        self._last_heartbeat_ms: dict[int, float] = {}

    def reset(self, broker_ids: list[int], now_ms: float) -> None:
        self._last_heartbeat_ms = {broker_id: now_ms for broker_id in broker_ids}

    def touch(self, broker_id: int, now_ms: float) -> None:
        self._last_heartbeat_ms[broker_id] = now_ms

    def is_live(self, broker_id: int, now_ms: float, session_timeout_ms: int) -> bool:
        last = self._last_heartbeat_ms.get(broker_id)
        return last is not None and now_ms - last < session_timeout_ms

    def forget(self, broker_id: int) -> None:
        self._last_heartbeat_ms.pop(broker_id, None)


def register_broker(
    image: MetadataImage,
    request_broker_id: int,
    incarnation_id: str,
    host: str,
    port: int,
    rack: str,
    sessions: BrokerSessions,
    now_ms: float,
    session_timeout_ms: int,
) -> list[metadata_pb2.MetadataRecord]:
    if request_broker_id < 0:
        raise RaftlogError("INVALID_REQUEST", f"broker id {request_broker_id} is negative")
    if not incarnation_id or not host or not 0 < port < 65536:
        raise RaftlogError("INVALID_REQUEST", "registration needs an incarnation id and a host:port endpoint")
    current = image.brokers.get(request_broker_id)
    if (
        current is not None
        and current.incarnation_id != incarnation_id
        and not current.fenced
        and sessions.is_live(request_broker_id, now_ms, session_timeout_ms)
    ):
        # Another live process claims this id: two nodes were given the same node.id.
        raise RaftlogError(
            "DUPLICATE_BROKER_REGISTRATION",
            f"broker {request_broker_id} is registered by a live process (incarnation {current.incarnation_id})",
        )
    return [records.register_broker(request_broker_id, incarnation_id, host, port, rack)]


def broker_heartbeat(
    image: MetadataImage, broker_id: int, broker_epoch: int, metadata_offset: int, want_fence: bool
) -> list[metadata_pb2.MetadataRecord]:
    """Unfences a broker once its metadata has caught up to its own registration; fences it on request."""
    broker = image.brokers.get(broker_id)
    if broker is None:
        raise RaftlogError("UNKNOWN_BROKER", f"broker {broker_id} is not registered")
    if broker.epoch != broker_epoch:
        raise RaftlogError("STALE_BROKER_EPOCH", f"broker {broker_id} epoch is {broker.epoch}, not {broker_epoch}")
    if want_fence and not broker.fenced:
        return [records.broker_fencing(broker_id, broker_epoch, fenced=True)]
    if not want_fence and broker.fenced and metadata_offset >= broker.epoch:
        return [records.broker_fencing(broker_id, broker_epoch, fenced=False)]
    return []


def fence_expired(
    image: MetadataImage, sessions: BrokerSessions, now_ms: float, session_timeout_ms: int
) -> list[metadata_pb2.MetadataRecord]:
    return [
        records.broker_fencing(broker.broker_id, broker.epoch, fenced=True)
        for broker in image.brokers.values()
        if not broker.fenced and not sessions.is_live(broker.broker_id, now_ms, session_timeout_ms)
    ]


def alter_configs(
    image: MetadataImage, resource: admin_pb2.ConfigResource, ops: list[admin_pb2.AlterConfigOp]
) -> list[metadata_pb2.MetadataRecord]:
    _check_resource(image, resource)
    if not ops:
        raise RaftlogError("INVALID_REQUEST", "no config changes given")
    names = [op.name for op in ops]
    if len(set(names)) != len(names):
        raise RaftlogError("INVALID_REQUEST", "a config name appears more than once")
    return [_config_record(resource, op) for op in ops]


def _config_record(resource: admin_pb2.ConfigResource, op: admin_pb2.AlterConfigOp) -> metadata_pb2.MetadataRecord:
    if op.op == admin_pb2.AlterConfigOp.DELETE:
        _check_known_name(op.name)
        return records.config(resource.type, resource.name, op.name, None)
    try:
        value = node_config.parse_dynamic_value(op.name, op.value)
    except node_config.ConfigError as exc:
        raise RaftlogError("INVALID_CONFIG", str(exc)) from None
    return records.config(resource.type, resource.name, op.name, value)


def _check_known_name(name: str) -> None:
    key = node_config.SCHEMA.get(name)
    if key is None or not key.dynamic:
        raise RaftlogError("INVALID_CONFIG", f"{name!r} is not a dynamic broker config")


def _check_resource(image: MetadataImage, resource: admin_pb2.ConfigResource) -> None:
    if resource.type == TOPIC_RESOURCE:
        raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"topic {resource.name!r} does not exist")
    if resource.type != BROKER_RESOURCE:
        raise RaftlogError("INVALID_REQUEST", f"entity type {resource.type!r} is not brokers or topics")
    if resource.name and (not resource.name.isdigit() or int(resource.name) not in image.brokers):
        raise RaftlogError("UNKNOWN_BROKER", f"broker {resource.name!r} is not registered")
