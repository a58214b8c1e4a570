"""Builders for metadata records, so callers never assemble protobuf oneofs by hand."""

from __future__ import annotations

from raftlog.metadata.image import scram_credential_record
from raftlog.scram import ScramCredential
from raftlog.v1 import acls_pb2
from raftlog.v1 import metadata_pb2 as pb


def encode_batch(*records: pb.MetadataRecord) -> bytes:
    return pb.MetadataBatch(records=list(records)).SerializeToString()


def decode_batch(data: bytes) -> pb.MetadataBatch:
    batch = pb.MetadataBatch()
    batch.ParseFromString(data)
    return batch


def register_broker(
    broker_id: int,
    incarnation_id: str,
    host: str,
    port: int,
    rack: str = "",
    listeners: tuple[tuple[str, str, int], ...] = (),
) -> pb.MetadataRecord:
    """`listeners` are (name, host, port) of every advertised listener; host:port is the inter-broker one."""
    return pb.MetadataRecord(
        register_broker=pb.RegisterBrokerRecord(
            broker_id=broker_id,
            incarnation_id=incarnation_id,
            endpoint=pb.Endpoint(host=host, port=port),
            rack=rack,
            listeners=[pb.Endpoint(listener=name, host=h, port=p) for name, h, p in listeners],
        )
    )


def broker_fencing(broker_id: int, broker_epoch: int, fenced: bool) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        broker_fencing=pb.BrokerFencingRecord(broker_id=broker_id, broker_epoch=broker_epoch, fenced=fenced)
    )


def unregister_broker(broker_id: int, broker_epoch: int) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        unregister_broker=pb.UnregisterBrokerRecord(broker_id=broker_id, broker_epoch=broker_epoch)
    )


def config(resource_type: str, resource_name: str, name: str, value: str | None) -> pb.MetadataRecord:
    record = pb.ConfigRecord(resource_type=resource_type, resource_name=resource_name, name=name)
    if value is not None:
        record.value = value
    return pb.MetadataRecord(config=record)


def no_op(payload: bytes = b"") -> pb.MetadataRecord:
    return pb.MetadataRecord(no_op=pb.NoOpRecord(payload=payload))


def topic(name: str, topic_id: bytes) -> pb.MetadataRecord:
    return pb.MetadataRecord(topic=pb.TopicRecord(name=name, topic_id=topic_id))


def remove_topic(topic_id: bytes) -> pb.MetadataRecord:
    return pb.MetadataRecord(remove_topic=pb.RemoveTopicRecord(topic_id=topic_id))


def partition(topic_id: bytes, index: int, replicas: list[int], leader: int) -> pb.MetadataRecord:
    """A new partition: every replica in the ISR, epochs at zero."""
    return pb.MetadataRecord(
        partition=pb.PartitionRecord(
            topic_id=topic_id,
            partition=index,
            replicas=replicas,
            isr=replicas,
            leader=leader,
            leader_epoch=0,
            partition_epoch=0,
        )
    )


def partition_change(
    topic_id: bytes,
    index: int,
    leader: int | None = None,
    isr: list[int] | None = None,
    replicas: list[int] | None = None,
    adding_replicas: list[int] | None = None,
    removing_replicas: list[int] | None = None,
) -> pb.MetadataRecord:
    change = pb.PartitionChangeRecord(topic_id=topic_id, partition=index)
    if leader is not None:
        change.leader = leader
    for name, values in (
        ("isr", isr),
        ("replicas", replicas),
        ("adding_replicas", adding_replicas),
        ("removing_replicas", removing_replicas),
    ):
        if values is not None:
            getattr(change, name).values.extend(values)
            getattr(change, name).SetInParent()  # an empty list is still "set"
    return pb.MetadataRecord(partition_change=change)


def producer_ids(broker_id: int, broker_epoch: int, next_producer_id: int) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        producer_ids=pb.ProducerIdsRecord(
            broker_id=broker_id, broker_epoch=broker_epoch, next_producer_id=next_producer_id
        )
    )


def access_control_entry(acl_id: bytes, binding: acls_pb2.AclBinding) -> pb.MetadataRecord:
    return pb.MetadataRecord(access_control_entry=pb.AccessControlEntryRecord(id=acl_id, binding=binding))


def remove_access_control_entry(acl_id: bytes) -> pb.MetadataRecord:
    return pb.MetadataRecord(remove_access_control_entry=pb.RemoveAccessControlEntryRecord(id=acl_id))


def user_scram_credential(name: str, credential: ScramCredential) -> pb.MetadataRecord:
    return pb.MetadataRecord(user_scram_credential=scram_credential_record(name, credential))


def remove_user_scram_credential(name: str, mechanism: str) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        remove_user_scram_credential=pb.RemoveUserScramCredentialRecord(name=name, mechanism=mechanism)
    )
