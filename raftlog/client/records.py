"""The client's use of the RecordBatch v2 codec (raftlog.log.record_batch).

A consumer decodes every record it hands out, so that decoding is done by aiokafka's C record
codec (its Cython DefaultRecordBatch, imported on first use: importing aiokafka takes ~0.1 s)
instead of raftlog's pure-Python loop: ~0.3-0.45 us a record instead of ~2.4 on this machine
(`raftlog perf consume --decode`). Only the record fields are read with it: the batch header and
its CRC are checked by raftlog's codec first, a compressed body is inflated by raftlog's
(its codecs and its size bound), and a batch the C codec cannot read, or reads to other counts
or offsets than its header gives, is decoded by raftlog's own, which names what is wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from raftlog.log import compression
from raftlog.log.errors import UnsupportedCompressionError
from raftlog.log.record_batch import (
    ATTRIBUTES_OFFSET,
    COMPRESSION_MASK,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    NO_PRODUCER_EPOCH,
    NO_SEQUENCE,
    BatchView,
    Record,
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


def batch_records(view: BatchView) -> Sequence[Record]:
    """The records of a data batch (what view.records() gives, as objects with the same
    attributes: offset, timestamp, key, value, headers), decoded by the C codec where it can."""
    header = view.header
    if header.record_count == 0:
        return view.records()
    buf = memoryview(view.buffer)[view.position : view.position + header.size]
    if header.attributes & COMPRESSION_MASK:
        inflated = bytearray(buf[:HEADER_SIZE])
        _ATTRIBUTES.pack_into(inflated, ATTRIBUTES_OFFSET, header.attributes & ~COMPRESSION_MASK)
        inflated += compression.decompress(header.attributes & COMPRESSION_MASK, bytes(buf[HEADER_SIZE:]))
        buf = memoryview(inflated)
    try:
        records = list(c_codec()(buf))
    except Exception:  # noqa: BLE001 - whatever the C codec makes of a malformed body: raftlog's names it
        return view.records()
    if len(records) != header.record_count or records[-1].offset > header.last_offset:
        return view.records()
    return records


_ATTRIBUTES = struct.Struct(">h")
_C_BATCH = None


def c_codec():
    """aiokafka's DefaultRecordBatch, imported on the first call (a consumer calls it when made,
    so its first poll does not pay for the import; other CLI commands never do)."""
    global _C_BATCH
    if _C_BATCH is None:
        from aiokafka.record.default_records import DefaultRecordBatch

        _C_BATCH = DefaultRecordBatch
    return _C_BATCH
