"""Controller decisions as pure functions of the metadata image and a request.

Each returns the metadata records to commit (possibly none) or raises RaftlogError; the
caller proposes the records through Raft. Keeping them pure lets the tests cover every
rule without a quorum.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from raftlog import config as node_config
from raftlog.controller import partitions as partition_rules
from raftlog.controller.topics import validated_configs
from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.topic_config import TOPIC_SCHEMA
from raftlog.v1 import admin_pb2, metadata_pb2

PRODUCER_ID_BLOCK_SIZE = 1000

BROKER_RESOURCE = "brokers"
TOPIC_RESOURCE = "topics"


class BrokerSessions:
    """When each broker last heartbeat, in the controller's monotonic milliseconds.

    Not replicated: a newly active controller starts every session afresh (as KRaft does),
    so a failover never fences a healthy broker, with one exception: the controller it
    replaces, whose silence it has itself observed (that is why it won the election).
    """

    def __init__(self) -> None:
        self._last_heartbeat_ms: dict[int, float] = {}

    def reset(self, broker_ids: list[int], now_ms: float, silent_since_ms: dict[int, float] | None = None) -> None:
        """Every session starts now, except for brokers known to have been silent since earlier."""
        silent_since_ms = silent_since_ms or {}
        self._last_heartbeat_ms = {b: min(now_ms, silent_since_ms.get(b, now_ms)) for b in broker_ids}

    def touch(self, broker_id: int, now_ms: float) -> None:
        self._last_heartbeat_ms[broker_id] = now_ms

    def is_live(self, broker_id: int, now_ms: float, session_timeout_ms: int) -> bool:
        last = self._last_heartbeat_ms.get(broker_id)
        return last is not None and now_ms - last < session_timeout_ms

    def forget(self, broker_id: int) -> None:
        self._last_heartbeat_ms.pop(broker_id, None)


class OfflineReplicas:
    """The replicas each broker last reported it cannot serve (heartbeat `offline_replicas`).

    Not replicated, like sessions: a new active controller learns them from the next heartbeat
    (every broker.heartbeat.interval.ms). A re-registration (a restart) forgets them. Elections
    and ISR joins skip a broker for the partitions it reported.
    """

    def __init__(self) -> None:
        self._by_broker: dict[int, frozenset[tuple[bytes, int]]] = {}

    def report(self, broker_id: int, replicas: frozenset[tuple[bytes, int]]) -> None:
        if replicas:
            self._by_broker[broker_id] = replicas
        else:
            self._by_broker.pop(broker_id, None)

    def forget(self, broker_id: int) -> None:
        self._by_broker.pop(broker_id, None)

    def usable_for(self, partition, usable: set[int]) -> set[int]:
        """The usable brokers that can serve this partition."""
        key = (partition.topic_id, partition.partition)
        return {b for b in usable if key not in self._by_broker.get(b, ())}


NO_OFFLINE_REPLICAS = OfflineReplicas()


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
    listeners: tuple[tuple[str, str, int], ...] = (),
) -> list[metadata_pb2.MetadataRecord]:
    if request_broker_id < 0:
        raise RaftlogError("INVALID_REQUEST", f"broker id {request_broker_id} is negative")
    if not incarnation_id or not host or not 0 < port < 65536:
        raise RaftlogError("INVALID_REQUEST", "registration needs an incarnation id and a host:port endpoint")
    names = [name for name, _, _ in listeners]
    if len(set(names)) != len(names) or not all(
        name and listener_host and 0 < listener_port < 65536 for name, listener_host, listener_port in listeners
    ):
        raise RaftlogError("INVALID_REQUEST", f"registration listeners {listeners} are not distinct NAME://host:port")
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
    return [records.register_broker(request_broker_id, incarnation_id, host, port, rack, listeners)]


def check_broker_epoch(image: MetadataImage, broker_id: int, broker_epoch: int) -> None:
    broker = image.brokers.get(broker_id)
    if broker is None:
        raise RaftlogError("UNKNOWN_BROKER", f"broker {broker_id} is not registered")
    if broker.epoch != broker_epoch:
        raise RaftlogError("STALE_BROKER_EPOCH", f"broker {broker_id} epoch is {broker.epoch}, not {broker_epoch}")


def unregister_broker(image: MetadataImage, broker_id: int) -> list[metadata_pb2.MetadataRecord]:
    """Kafka's UnregisterBroker, with two refusals Kafka does not make: the broker must be fenced
    (a live broker would register again at its next heartbeat, so forgetting it means nothing
    until it is stopped) and must hold no replica (a partition would keep a replica no broker
    serves: move its replicas off first, `partitions reassign --generate` with the other brokers)."""
    broker = image.brokers.get(broker_id)
    if broker is None:
        raise RaftlogError("UNKNOWN_BROKER", f"broker {broker_id} is not registered")
    problems = []
    if not broker.fenced:
        problems.append("is alive (unfenced): stop it first")
    held = [
        f"{name}-{p.partition}"
        for name, p in image.partitions()
        if broker_id in p.replicas or broker_id in p.adding_replicas
    ]
    if held:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        problems.append(f"still holds {len(held)} replicas ({shown}): reassign them first")
    if problems:
        raise RaftlogError("INVALID_REQUEST", f"broker {broker_id} " + "; it ".join(problems))
    return [records.unregister_broker(broker_id, broker.epoch)]


def broker_heartbeat(
    image: MetadataImage,
    broker_id: int,
    broker_epoch: int,
    metadata_offset: int,
    want_fence: bool,
    unclean_default: bool = False,
    offline_replicas: frozenset[tuple[bytes, int]] = frozenset(),
    offline: OfflineReplicas = NO_OFFLINE_REPLICAS,
) -> list[metadata_pb2.MetadataRecord]:
    """Unfences a broker once its metadata has caught up to its own registration; fences it on
    request; takes the replicas it reports offline out of leadership and the ISR."""
    check_broker_epoch(image, broker_id, broker_epoch)
    broker = image.brokers[broker_id]
    if want_fence and not broker.fenced:
        return set_fenced(image, broker_id, True, unclean_default, offline=offline)
    new_records = []
    if not want_fence and broker.fenced and metadata_offset >= broker.epoch:
        new_records = set_fenced(image, broker_id, False, unclean_default, offline=offline)
    if offline_replicas and not new_records:  # after an unfencing, the next heartbeat does it
        new_records = replicas_offline(image, broker_id, offline_replicas, unclean_default, offline)
    return new_records


def replicas_offline(
    image: MetadataImage,
    broker_id: int,
    offline_replicas: frozenset[tuple[bytes, int]],
    unclean_default: bool,
    offline: OfflineReplicas = NO_OFFLINE_REPLICAS,
) -> list[metadata_pb2.MetadataRecord]:
    """Partition changes for replicas a broker reports it cannot serve (none once they are done)."""
    usable = usable_brokers(image)
    new_records: list[metadata_pb2.MetadataRecord] = []
    for topic_name, partition in image.partitions():
        if (partition.topic_id, partition.partition) in offline_replicas:
            new_records += partition_rules.on_replica_offline(
                partition,
                broker_id,
                offline.usable_for(partition, usable),
                unclean_allowed(image, topic_name, unclean_default),
            )
    return new_records


def fence_expired(
    image: MetadataImage,
    sessions: BrokerSessions,
    now_ms: float,
    session_timeout_ms: int,
    unclean_default: bool = False,
    offline: OfflineReplicas = NO_OFFLINE_REPLICAS,
) -> list[metadata_pb2.MetadataRecord]:
    expired = [
        broker.broker_id
        for broker in image.brokers.values()
        if not broker.fenced and not sessions.is_live(broker.broker_id, now_ms, session_timeout_ms)
    ]
    new_records: list[metadata_pb2.MetadataRecord] = []
    for broker_id in expired:
        new_records += set_fenced(image, broker_id, True, unclean_default, also_fenced=set(expired), offline=offline)
    return new_records


def set_fenced(
    image: MetadataImage,
    broker_id: int,
    fenced: bool,
    unclean_default: bool,
    also_fenced: AbstractSet[int] = frozenset(),
    offline: OfflineReplicas = NO_OFFLINE_REPLICAS,
) -> list[metadata_pb2.MetadataRecord]:
    """The fencing record plus the partition changes it causes (leaders move, ISRs shrink or revive)."""
    broker = image.brokers[broker_id]
    usable = {b.broker_id for b in image.brokers.values() if not b.fenced} - set(also_fenced)
    usable = usable - {broker_id} if fenced else usable | {broker_id}
    react = partition_rules.on_broker_fenced if fenced else partition_rules.on_broker_unfenced
    new_records = [records.broker_fencing(broker_id, broker.epoch, fenced=fenced)]
    for topic_name, partition in image.partitions():
        new_records += react(
            partition,
            broker_id,
            offline.usable_for(partition, usable),
            unclean_allowed(image, topic_name, unclean_default),
        )
    return new_records


def unclean_allowed(image: MetadataImage, topic_name: str, static_default: bool) -> bool:
    for resource in (("topics", topic_name), ("brokers", "")):
        value = image.dynamic_config(*resource).get("unclean.leader.election.enable")
        if value is not None:
            return value == "true"
    return static_default


def usable_brokers(image: MetadataImage) -> set[int]:
    return {b.broker_id for b in image.brokers.values() if not b.fenced}


def allocate_producer_ids(image: MetadataImage, broker_id: int, broker_epoch: int) -> tuple[int, list]:
    """The first id of a new block for the broker, and the record that hands it out."""
    check_broker_epoch(image, broker_id, broker_epoch)
    first = image.next_producer_id
    return first, [records.producer_ids(broker_id, broker_epoch, first + PRODUCER_ID_BLOCK_SIZE)]


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
    if resource.type == TOPIC_RESOURCE:
        if op.op == admin_pb2.AlterConfigOp.DELETE:
            _check_topic_key(op.name)
            return records.config(resource.type, resource.name, op.name, None)
        [(name, value)] = validated_configs({op.name: op.value}).items()
        return records.config(resource.type, resource.name, name, value)
    if op.op == admin_pb2.AlterConfigOp.DELETE:
        return records.config(resource.type, resource.name, _known_dynamic_name(op.name), None)
    try:
        # A Kafka setting with another name here is stored under that name; one without a meaning
        # here is stored as given (describe shows it) and does nothing: the CLI warns the operator.
        name, value, _ = node_config.resolve_dynamic_setting(op.name, op.value)
    except node_config.ConfigError as exc:
        raise RaftlogError("INVALID_CONFIG", str(exc)) from None
    return records.config(resource.type, resource.name, name, value)


def _known_dynamic_name(name: str) -> str:
    """The name a dynamic broker config is stored under (a Kafka alias's target)."""
    alias = node_config.KAFKA_ALIASES.get(name)
    if alias is not None and alias.dynamic:
        return alias.target
    ignored = node_config.KAFKA_IGNORED.get(name)
    if ignored is not None and ignored.dynamic:
        return name
    key = node_config.SCHEMA.get(name)
    if key is None or not key.dynamic:
        raise RaftlogError("INVALID_CONFIG", f"{name!r} is not a dynamic broker config")
    return name


def _check_topic_key(name: str) -> None:
    if name not in TOPIC_SCHEMA:
        raise RaftlogError("INVALID_CONFIG", f"{name!r} is not a topic config")


def _check_resource(image: MetadataImage, resource: admin_pb2.ConfigResource) -> None:
    if resource.type == TOPIC_RESOURCE:
        if image.topic(resource.name) is None:
            raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"topic {resource.name!r} does not exist")
        return
    if resource.type != BROKER_RESOURCE:
        raise RaftlogError("INVALID_REQUEST", f"entity type {resource.type!r} is not brokers or topics")
    if resource.name and (not resource.name.isdigit() or int(resource.name) not in image.brokers):
        raise RaftlogError("UNKNOWN_BROKER", f"broker {resource.name!r} is not registered")
