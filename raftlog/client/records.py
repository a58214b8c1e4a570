"""The client's use of the RecordBatch v2 codec (raftlog.log.record_batch)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from raftlog.log import compression
from raftlog.log.errors import UnsupportedCompressionError
from raftlog.log.record_batch import (
    CRC_START,
    HEADER,
    NO_PRODUCER_EPOCH,
    NO_SEQUENCE,
    BatchView,
    crc32c,
    iter_batch_views,
    iter_batches,
)
from raftlog.log.record_batch import (
    encode_batch as _encode,
)

# producerId, producerEpoch, baseSequence: header fields 9-11, after the 43 bytes before them.
_PRODUCER_FIELDS = struct.Struct(">qhi")
_PRODUCER_FIELDS_AT = struct.calcsize(">qiibIhiqq")
_CRC = struct.Struct(">I")
_CRC_AT = struct.calcsize(">qiib")
assert HEADER.format.endswith("qhii") and _PRODUCER_FIELDS_AT == 43 and _CRC_AT == 17 < CRC_START


def check_compression(name: str | None) -> None:
    try:
        compression.codec_id(name)
    except UnsupportedCompressionError as exc:
        raise ValueError(exc.message) from None


def encode_batch(
    records: list[tuple], compression_type: str | None, producer_id: int, producer_epoch: int, base_sequence: int
) -> bytes:
    """records: (key, value, headers, timestamp_ms)."""
    return _encode(
        records,
        compression_type,
        producer_id,
        producer_epoch if producer_id >= 0 else NO_PRODUCER_EPOCH,
        base_sequence if producer_id >= 0 else NO_SEQUENCE,
    )


def stamp_producer(batch: bytes, producer_id: int, producer_epoch: int, base_sequence: int) -> bytes:
    """A batch encoded without a producer, given one (and its CRC again): the producer encodes a
    full batch while it waits for a slot, and learns its sequence only when it goes out."""
    stamped = bytearray(batch)
    _PRODUCER_FIELDS.pack_into(stamped, _PRODUCER_FIELDS_AT, producer_id, producer_epoch, base_sequence)
    _CRC.pack_into(stamped, _CRC_AT, crc32c(memoryview(stamped)[CRC_START:]))
    return bytes(stamped)


def decode_records(data: bytes) -> Iterator[tuple[int, int, bytes | None, bytes | None, list]]:
    """(offset, timestamp, key, value, headers) of every record in whole batches of data."""
    for header, records in iter_batches(data):
        if header.is_control:
            continue
        for record in records:
            yield record.offset, record.timestamp, record.key, record.value, list(record.headers)


def data_batches(data: bytes) -> Iterator[BatchView]:
    """Every whole batch in data as a lazy view, control batches included (the caller skips their
    records but moves past their offsets)."""
    return iter_batch_views(data)
