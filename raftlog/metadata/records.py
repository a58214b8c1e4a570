"""Builders for metadata records, so callers never assemble protobuf oneofs by hand."""

from __future__ import annotations

from raftlog.v1 import metadata_pb2 as pb


def encode_batch(*records: pb.MetadataRecord) -> bytes:
    return pb.MetadataBatch(records=list(records)).SerializeToString()


def decode_batch(data: bytes) -> pb.MetadataBatch:
    batch = pb.MetadataBatch()
    batch.ParseFromString(data)
    return batch


def register_broker(broker_id: int, incarnation_id: str, host: str, port: int, rack: str = "") -> pb.MetadataRecord:
    return pb.MetadataRecord(
        register_broker=pb.RegisterBrokerRecord(
            broker_id=broker_id,
            incarnation_id=incarnation_id,
            endpoint=pb.Endpoint(host=host, port=port),
            rack=rack,
        )
    )


def broker_fencing(broker_id: int, broker_epoch: int, fenced: bool) -> pb.MetadataRecord:
    return pb.MetadataRecord(
        broker_fencing=pb.BrokerFencingRecord(broker_id=broker_id, broker_epoch=broker_epoch, fenced=fenced)
    )


def config(resource_type: str, resource_name: str, name: str, value: str | None) -> pb.MetadataRecord:
    record = pb.ConfigRecord(resource_type=resource_type, resource_name=resource_name, name=name)
    if value is not None:
        record.value = value
    return pb.MetadataRecord(config=record)


def no_op(payload: bytes = b"") -> pb.MetadataRecord:
    return pb.MetadataRecord(no_op=pb.NoOpRecord(payload=payload))
