"""MetadataImage: the cluster metadata as of one offset of the committed metadata log.

Pure: applying the same batches in the same order gives the same image on every node.
The offset of a batch is the Raft index of the entry that carried it; a broker's epoch is
the offset of its latest registration, as in KRaft.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from raftlog.authorizer.acls import AclBinding
from raftlog.node_ids import NO_NODE
from raftlog.scram import ScramCredential
from raftlog.v1 import metadata_pb2 as pb

ConfigKeyT = tuple[str, str]  # (resource type, resource name; "" for the type's default)
NO_LEADER = NO_NODE  # a partition without a leader (offline)


@dataclass(frozen=True)
class BrokerInfo:
    broker_id: int
    incarnation_id: str
    epoch: int
    host: str
    port: int
    rack: str
    fenced: bool
    listeners: tuple[tuple[str, str, int], ...] = ()  # (name, host, port) of every advertised listener

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def endpoint_for(self, listener: str | None) -> tuple[str, int]:
        """The address a client that came in on `listener` is given for this broker: that listener's
        advertised address, or the inter-broker one when the broker has no listener of that name
        (Kafka leaves such a broker out; an older registration has no names at all)."""
        for name, host, port in self.listeners:
            if name == listener:
                return host, port
        return self.host, self.port

    def to_registration(self, listener: str | None = None) -> pb.BrokerRegistration:
        host, port = self.endpoint_for(listener)
        return pb.BrokerRegistration(
            broker_id=self.broker_id,
            incarnation_id=self.incarnation_id,
            broker_epoch=self.epoch,
            endpoint=pb.Endpoint(host=host, port=port),
            rack=self.rack,
            fenced=self.fenced,
            listeners=[pb.Endpoint(listener=name, host=h, port=p) for name, h, p in self.listeners],
        )


@dataclass(frozen=True)
class PartitionInfo:
    topic_id: bytes
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()

    @property
    def preferred_leader(self) -> int:
        return self.replicas[0] if self.replicas else NO_LEADER

    def to_record(self) -> pb.PartitionRecord:
        return pb.PartitionRecord(
            topic_id=self.topic_id,
            partition=self.partition,
            replicas=self.replicas,
            isr=self.isr,
            leader=self.leader,
            leader_epoch=self.leader_epoch,
            partition_epoch=self.partition_epoch,
            adding_replicas=self.adding_replicas,
            removing_replicas=self.removing_replicas,
        )

    @classmethod
    def from_record(cls, record: pb.PartitionRecord) -> PartitionInfo:
        return cls(
            record.topic_id,
            record.partition,
            tuple(record.replicas),
            tuple(record.isr),
            record.leader,
            record.leader_epoch,
            record.partition_epoch,
            tuple(record.adding_replicas),
            tuple(record.removing_replicas),
        )


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: bytes
    partitions: dict[int, PartitionInfo]


class MetadataImage:
    def __init__(self) -> None:
        self.offset = 0
        self.brokers: dict[int, BrokerInfo] = {}
        self.configs: dict[ConfigKeyT, dict[str, str]] = {}
        self.topics_by_id: dict[bytes, TopicInfo] = {}
        self.topic_ids: dict[str, bytes] = {}  # name -> id
        self.next_producer_id = 0
        # ACL bindings by id. Replaced, never changed in place, on every ACL change, so an
        # authorizer built from one dict stays valid for it (raftlog/api/authorization.py).
        self.acls: dict[bytes, AclBinding] = {}
        # (user name, mechanism) -> credential: salt, iterations, StoredKey, ServerKey (no password)
        self.scram_credentials: dict[tuple[str, str], ScramCredential] = {}

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.scram_credentials.get((user, mechanism))

    def topic(self, name: str) -> TopicInfo | None:
        topic_id = self.topic_ids.get(name)
        return None if topic_id is None else self.topics_by_id[topic_id]

    def partitions(self):
        """Every (topic name, PartitionInfo), in name and partition order."""
        for name in sorted(self.topic_ids):
            topic = self.topics_by_id[self.topic_ids[name]]
            for index in sorted(topic.partitions):
                yield name, topic.partitions[index]

    def apply_batch(self, offset: int, batch: pb.MetadataBatch) -> None:
        self.apply_records(offset, batch.records)

    def apply_records(self, offset: int, records) -> None:
        """Applies the records of the entry at `offset`, in order (a batch's records, or the
        controller's uncommitted ones, which it applies to its own copy as it proposes them)."""
        assert offset >= self.offset, f"metadata offset {offset} applied after {self.offset}: the log went backwards"
        for record in records:
            self._apply_record(offset, record)
        self.offset = offset

    def copy(self) -> MetadataImage:
        """An independent image equal to this one (records applied to one do not show in the other)."""
        image = MetadataImage()
        image.offset = self.offset
        image.brokers = dict(self.brokers)
        image.configs = {key: dict(entries) for key, entries in self.configs.items()}
        image.topics_by_id = {
            topic_id: TopicInfo(topic.name, topic_id, dict(topic.partitions))
            for topic_id, topic in self.topics_by_id.items()
        }
        image.topic_ids = dict(self.topic_ids)
        image.next_producer_id = self.next_producer_id
        image.acls = self.acls  # copied on write
        image.scram_credentials = dict(self.scram_credentials)
        return image

    def _apply_record(self, offset: int, record: pb.MetadataRecord) -> None:
        kind = record.WhichOneof("record")
        if kind == "register_broker":
            self._register_broker(offset, record.register_broker)
        elif kind == "broker_fencing":
            self._fence_broker(record.broker_fencing)
        elif kind == "unregister_broker":
            self._unregister_broker(record.unregister_broker)
        elif kind == "config":
            self._apply_config(record.config)
        elif kind == "topic":
            self._add_topic(record.topic.name, record.topic.topic_id)
        elif kind == "remove_topic":
            self._remove_topic(record.remove_topic.topic_id)
        elif kind == "partition":
            self._set_partition(PartitionInfo.from_record(record.partition))
        elif kind == "partition_change":
            self._change_partition(record.partition_change)
        elif kind == "producer_ids":
            self.next_producer_id = max(self.next_producer_id, record.producer_ids.next_producer_id)
        elif kind == "access_control_entry":
            self._add_acl(record.access_control_entry)
        elif kind == "remove_access_control_entry":
            self.acls = {i: b for i, b in self.acls.items() if i != record.remove_access_control_entry.id}
        elif kind == "user_scram_credential":
            self._set_scram_credential(record.user_scram_credential)
        elif kind == "remove_user_scram_credential":
            removal = record.remove_user_scram_credential
            self.scram_credentials.pop((removal.name, removal.mechanism), None)
        # no_op and unknown (newer) record kinds change nothing

    def _set_scram_credential(self, record: pb.UserScramCredentialRecord) -> None:
        self.scram_credentials[(record.name, record.mechanism)] = ScramCredential(
            record.mechanism, record.salt, record.iterations, record.stored_key, record.server_key
        )

    def _register_broker(self, offset: int, record: pb.RegisterBrokerRecord) -> None:
        self.brokers[record.broker_id] = BrokerInfo(
            broker_id=record.broker_id,
            incarnation_id=record.incarnation_id,
            epoch=offset,
            host=record.endpoint.host,
            port=record.endpoint.port,
            rack=record.rack,
            listeners=tuple((e.listener, e.host, e.port) for e in record.listeners),
            fenced=True,  # a broker starts fenced; the controller unfences it once it has caught up
        )

    def _fence_broker(self, record: pb.BrokerFencingRecord) -> None:
        broker = self.brokers.get(record.broker_id)
        if broker is not None and broker.epoch == record.broker_epoch:
            self.brokers[record.broker_id] = replace(broker, fenced=record.fenced)

    def _unregister_broker(self, record: pb.UnregisterBrokerRecord) -> None:
        broker = self.brokers.get(record.broker_id)
        if broker is None or broker.epoch != record.broker_epoch:
            return  # registered again since: that incarnation stays
        del self.brokers[record.broker_id]

    def _apply_config(self, record: pb.ConfigRecord) -> None:
        key = (record.resource_type, record.resource_name)
        entity = self.configs.setdefault(key, {})
        if record.HasField("value"):
            entity[record.name] = record.value
        else:
            entity.pop(record.name, None)
            if not entity:
                del self.configs[key]

    def _add_topic(self, name: str, topic_id: bytes) -> None:
        self.topics_by_id[topic_id] = TopicInfo(name, topic_id, {})
        self.topic_ids[name] = topic_id

    def _remove_topic(self, topic_id: bytes) -> None:
        topic = self.topics_by_id.pop(topic_id, None)
        if topic is not None:
            del self.topic_ids[topic.name]
            self.configs.pop(("topics", topic.name), None)

    def _set_partition(self, partition: PartitionInfo) -> None:
        topic = self.topics_by_id.get(partition.topic_id)
        if topic is not None:
            topic.partitions[partition.partition] = partition

    def _change_partition(self, change: pb.PartitionChangeRecord) -> None:
        topic = self.topics_by_id.get(change.topic_id)
        current = topic.partitions.get(change.partition) if topic else None
        if topic is None or current is None:
            return
        updates: dict = {"partition_epoch": current.partition_epoch + 1}
        if change.HasField("leader") and change.leader != current.leader:
            updates["leader"] = change.leader
            updates["leader_epoch"] = current.leader_epoch + 1
        for field_name in ("isr", "replicas", "adding_replicas", "removing_replicas"):
            if change.HasField(field_name):
                updates[field_name] = tuple(getattr(change, field_name).values)
        topic.partitions[change.partition] = replace(current, **updates)

    def _add_acl(self, record: pb.AccessControlEntryRecord) -> None:
        assert len(record.id) == 16, f"an ACL record's id is 16 bytes, got {len(record.id)}"
        self.acls = {**self.acls, record.id: AclBinding.from_pb(record.binding)}

    def dynamic_config(self, resource_type: str, resource_name: str) -> dict[str, str]:
        return dict(self.configs.get((resource_type, resource_name), {}))

    def to_snapshot(self) -> bytes:
        snapshot = pb.MetadataImageSnapshot(offset=self.offset, next_producer_id=self.next_producer_id)
        for name, topic_id in sorted(self.topic_ids.items()):
            snapshot.topics.append(pb.TopicRecord(name=name, topic_id=topic_id))
        for _, partition in self.partitions():
            snapshot.partitions.append(partition.to_record())
        for broker in sorted(self.brokers.values(), key=lambda b: b.broker_id):
            snapshot.brokers.append(broker.to_registration())
        for (resource_type, resource_name), entries in sorted(self.configs.items()):
            for name, value in sorted(entries.items()):
                snapshot.configs.append(
                    pb.ConfigRecord(resource_type=resource_type, resource_name=resource_name, name=name, value=value)
                )
        for acl_id, binding in sorted(self.acls.items()):
            snapshot.acls.append(pb.AccessControlEntryRecord(id=acl_id, binding=binding.to_pb()))
        for (name, _), credential in sorted(self.scram_credentials.items()):
            snapshot.scram_credentials.append(scram_credential_record(name, credential))
        return snapshot.SerializeToString()

    @classmethod
    def from_snapshot(cls, data: bytes) -> MetadataImage:
        snapshot = pb.MetadataImageSnapshot()
        snapshot.ParseFromString(data)
        image = cls()
        image.offset = snapshot.offset
        for b in snapshot.brokers:
            image.brokers[b.broker_id] = BrokerInfo(
                b.broker_id,
                b.incarnation_id,
                b.broker_epoch,
                b.endpoint.host,
                b.endpoint.port,
                b.rack,
                b.fenced,
                tuple((e.listener, e.host, e.port) for e in b.listeners),
            )
        for record in snapshot.configs:
            image._apply_config(record)
        for topic in snapshot.topics:
            image._add_topic(topic.name, topic.topic_id)
        for partition in snapshot.partitions:
            image._set_partition(PartitionInfo.from_record(partition))
        image.next_producer_id = snapshot.next_producer_id
        for acl in snapshot.acls:
            image._add_acl(acl)
        for credential in snapshot.scram_credentials:
            image._set_scram_credential(credential)
        return image


def scram_credential_record(name: str, credential: ScramCredential) -> pb.UserScramCredentialRecord:
    return pb.UserScramCredentialRecord(
        name=name,
        mechanism=credential.mechanism,
        salt=credential.salt,
        stored_key=credential.stored_key,
        server_key=credential.server_key,
        iterations=credential.iterations,
    )
