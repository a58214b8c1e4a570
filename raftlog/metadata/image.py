"""MetadataImage: the cluster metadata as of one offset of the committed metadata log.

Pure: applying the same batches in the same order gives the same image on every node.
The offset of a batch is the Raft index of the entry that carried it; a broker's epoch is
the offset of its latest registration, as in KRaft.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from raftlog.v1 import metadata_pb2 as pb

ConfigKeyT = tuple[str, str]  # (resource type, resource name; "" for the type's default)


@dataclass(frozen=True)
class BrokerInfo:
    broker_id: int
    incarnation_id: str
    epoch: int
    host: str
    port: int
    rack: str
    fenced: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class MetadataImage:
    def __init__(self) -> None:
        self.offset = 0
        self.brokers: dict[int, BrokerInfo] = {}
        self.configs: dict[ConfigKeyT, dict[str, str]] = {}

    def apply_batch(self, offset: int, batch: pb.MetadataBatch) -> None:
        for record in batch.records:
            self._apply_record(offset, record)
        self.offset = offset

    def _apply_record(self, offset: int, record: pb.MetadataRecord) -> None:
        kind = record.WhichOneof("record")
        if kind == "register_broker":
            self._register_broker(offset, record.register_broker)
        elif kind == "broker_fencing":
            self._fence_broker(record.broker_fencing)
        elif kind == "config":
            self._apply_config(record.config)
        # no_op and unknown (newer) record kinds change nothing

    def _register_broker(self, offset: int, record: pb.RegisterBrokerRecord) -> None:
        self.brokers[record.broker_id] = BrokerInfo(
            broker_id=record.broker_id,
            incarnation_id=record.incarnation_id,
            epoch=offset,
            host=record.endpoint.host,
            port=record.endpoint.port,
            rack=record.rack,
            fenced=True,  # a broker starts fenced; the controller unfences it once it has caught up
        )

    def _fence_broker(self, record: pb.BrokerFencingRecord) -> None:
        broker = self.brokers.get(record.broker_id)
        if broker is not None and broker.epoch == record.broker_epoch:
            self.brokers[record.broker_id] = replace(broker, fenced=record.fenced)

    def _apply_config(self, record: pb.ConfigRecord) -> None:
        key = (record.resource_type, record.resource_name)
        entity = self.configs.setdefault(key, {})
        if record.HasField("value"):
            entity[record.name] = record.value
        else:
            entity.pop(record.name, None)
            if not entity:
                del self.configs[key]

    def dynamic_config(self, resource_type: str, resource_name: str) -> dict[str, str]:
        return dict(self.configs.get((resource_type, resource_name), {}))

    def to_snapshot(self) -> bytes:
        snapshot = pb.MetadataImageSnapshot(offset=self.offset)
        for broker in sorted(self.brokers.values(), key=lambda b: b.broker_id):
            snapshot.brokers.append(
                pb.BrokerRegistration(
                    broker_id=broker.broker_id,
                    incarnation_id=broker.incarnation_id,
                    broker_epoch=broker.epoch,
                    endpoint=pb.Endpoint(host=broker.host, port=broker.port),
                    rack=broker.rack,
                    fenced=broker.fenced,
                )
            )
        for (resource_type, resource_name), entries in sorted(self.configs.items()):
            for name, value in sorted(entries.items()):
                snapshot.configs.append(
                    pb.ConfigRecord(resource_type=resource_type, resource_name=resource_name, name=name, value=value)
                )
        return snapshot.SerializeToString()

    @classmethod
    def from_snapshot(cls, data: bytes) -> MetadataImage:
        snapshot = pb.MetadataImageSnapshot()
        snapshot.ParseFromString(data)
        image = cls()
        image.offset = snapshot.offset
        for b in snapshot.brokers:
            image.brokers[b.broker_id] = BrokerInfo(
                b.broker_id, b.incarnation_id, b.broker_epoch, b.endpoint.host, b.endpoint.port, b.rack, b.fenced
            )
        for record in snapshot.configs:
            image._apply_config(record)
        return image
