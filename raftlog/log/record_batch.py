"""Kafka's RecordBatch v2 (magic 2), byte for byte, in three faces.

- `encode_batch` for clients: records -> batch bytes (with compression);
- `decode_batch` / `iter_batches` for consumers and tools: batch bytes -> records, and
  `iter_batch_views` for consumers that read headers now and records only when asked;
- `BatchHeader` for the broker: validate length and CRC, read the header fields and
  rewrite base offset and partition leader epoch in place (both outside the CRC range),
  never touching the records.

Layout (big-endian): baseOffset int64, batchLength int32, partitionLeaderEpoch int32,
magic int8, crc uint32 (CRC-32C of everything after it), attributes int16,
lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64, producerId int64,
producerEpoch int16, baseSequence int32, records count int32, then the records (the part
after the count is what compression applies to). A record: length varint, attributes int8,
timestampDelta varlong, offsetDelta varint, key (varint length, -1 null), value (same),
header count varint, headers (key: varint length + UTF-8, value: varint length, -1 null).
Varints are zigzag, as in protobuf's sint32/sint64.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import crc32c as _crc32c

from raftlog.log import compression as _compression
from raftlog.log.errors import CorruptRecordError, LogError, UnsupportedCompressionError

MAGIC = 2
HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes batchLength does not count
CRC_START = 21  # attributes begin here; the CRC covers [21, end)
ATTRIBUTES_OFFSET = CRC_START
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")


def crc32c(data) -> int:
    return _crc32c.crc32c(data)


# -- varints ----------------------------------------------------------------------------------


def _encode_varint(value: int) -> bytes:
    """Zigzag varint (Kafka's ByteUtils.writeVarint/writeVarlong)."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag & ~0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


_SMALL_VARINTS = [_encode_varint(i) for i in range(-64, 64)]


def encode_varint(value: int) -> bytes:
    if -64 <= value < 64:
        return _SMALL_VARINTS[value + 64]
    return _encode_varint(value)


def decode_varint(buf, pos: int) -> tuple[int, int]:
    """(value, next position); raises CorruptRecordError on a truncated or overlong varint."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise CorruptRecordError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes")


# -- records ----------------------------------------------------------------------------------


class Record(NamedTuple):
    """A decoded record (a tuple: decoding builds hundreds of thousands per second)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _bytes_field(value: bytes | None) -> bytes:
    if value is None:
        return _SMALL_VARINTS[63]  # -1
    return encode_varint(len(value)) + value


def _encode_record(offset_delta: int, timestamp_delta: int, key, value, headers) -> bytes:
    if headers:
        parts = [encode_varint(len(headers))]
        for header_key, header_value in headers:
            raw_key = header_key.encode() if isinstance(header_key, str) else header_key
            parts.append(encode_varint(len(raw_key)) + raw_key)
            parts.append(_bytes_field(header_value))
        header_bytes = b"".join(parts)
    else:
        header_bytes = b"\x00"
    body = b"".join(
        (
            b"\x00",
            encode_varint(timestamp_delta),
            encode_varint(offset_delta),
            _bytes_field(key),
            _bytes_field(value),
            header_bytes,
        )
    )
    return encode_varint(len(body)) + body


def encode_batch(
    records: Sequence[tuple],
    compression: str | None = None,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    log_append_time: bool = False,
    transactional: bool = False,
    control: bool = False,
) -> bytes:
    """A RecordBatch of (key, value, headers, timestamp_ms) tuples; headers may be empty or None."""
    if not records:
        raise ValueError("a record batch holds at least one record")
    codec = _compression.codec_id(compression)
    base_timestamp = records[0][3]  # the first record's, as Kafka's producer writes it (deltas may be < 0)
    max_timestamp = max(r[3] for r in records)
    body = b"".join(
        _encode_record(i, timestamp - base_timestamp, key, value, headers)
        for i, (key, value, headers, timestamp) in enumerate(records)
    )
    attributes = (
        codec
        | (TIMESTAMP_TYPE_MASK if log_append_time else 0)
        | (TRANSACTIONAL_MASK if transactional else 0)
        | (CONTROL_MASK if control else 0)
    )
    return _assemble(
        body,
        len(records),
        len(records) - 1,
        attributes,
        base_offset,
        partition_leader_epoch,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
    )


def encode_batch_with_offsets(original: BatchHeader, records: Sequence[Record]) -> bytes:
    """A batch of some of original's records, keeping their offsets and the batch's header
    fields (compaction): base offset, last offset delta, epoch, producer, timestamps, codec."""
    append_time = original.attributes & TIMESTAMP_TYPE_MASK
    body = b"".join(
        _encode_record(
            r.offset - original.base_offset,
            0 if append_time else r.timestamp - original.base_timestamp,
            r.key,
            r.value,
            r.headers,
        )
        for r in records
    )
    return _assemble(
        body,
        len(records),
        original.last_offset_delta,
        original.attributes,
        original.base_offset,
        original.partition_leader_epoch,
        original.base_timestamp,
        original.max_timestamp,
        original.producer_id,
        original.producer_epoch,
        original.base_sequence,
    )


def _assemble(
    body: bytes,
    count: int,
    last_offset_delta: int,
    attributes: int,
    base_offset: int,
    partition_leader_epoch: int,
    base_timestamp: int,
    max_timestamp: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
) -> bytes:
    codec = attributes & COMPRESSION_MASK
    if codec:
        body = _compression.compress(codec, body)
    batch_length = HEADER_SIZE - LOG_OVERHEAD + len(body)
    header = bytearray(
        HEADER.pack(
            base_offset,
            batch_length,
            partition_leader_epoch,
            MAGIC,
            0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    )
    crc = _crc32c.crc32c(body, _crc32c.crc32c(memoryview(header)[CRC_START:]))
    struct.pack_into(">I", header, 17, crc)
    return bytes(header) + body


# -- the broker's view: header only -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def compression(self) -> str:
        return _compression.codec_name(self.attributes & COMPRESSION_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def timestamp_type(self) -> str:
        return "LogAppendTime" if self.attributes & TIMESTAMP_TYPE_MASK else "CreateTime"

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) % (2**31)


def read_header(buf, pos: int = 0, check_crc: bool = True) -> BatchHeader:
    """Parses and validates the batch starting at pos (which must be complete in buf)."""
    available = len(buf) - pos
    if available < HEADER_SIZE:
        raise CorruptRecordError(f"{available} bytes cannot hold a batch header ({HEADER_SIZE})")
    header = BatchHeader(*HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise CorruptRecordError(
            f"unsupported magic {header.magic} (only 2 is supported)", reason="UNSUPPORTED_VERSION"
        )
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"batch length {header.batch_length} is below the minimum {MIN_BATCH_LENGTH}")
    if header.size > available:
        raise CorruptRecordError(f"batch of {header.size} bytes is cut off after {available}")
    # A compacted batch may hold fewer records than its offset range (gaps), never more.
    if header.record_count < 1 or header.last_offset_delta < header.record_count - 1:
        if not (header.record_count == 0 and header.is_control):
            raise CorruptRecordError(
                f"inconsistent batch: {header.record_count} records, last offset delta {header.last_offset_delta}",
                reason="INVALID_RECORD",
            )
    if header.attributes & COMPRESSION_MASK > 4:
        raise UnsupportedCompressionError(f"unknown compression codec {header.attributes & COMPRESSION_MASK}")
    if check_crc:
        actual = _crc32c.crc32c(memoryview(buf)[pos + CRC_START : pos + header.size])
        if actual != header.crc:
            raise CorruptRecordError(f"CRC mismatch: stored {header.crc:#010x}, computed {actual:#010x}")
    return header


def iter_headers(buf, check_crc: bool = True) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each batch in buf; the batches must fill buf exactly."""
    pos = 0
    end = len(buf)
    while pos < end:
        header = read_header(buf, pos, check_crc)
        yield pos, header
        pos += header.size


def check_uncompressed_size(buf, max_bytes: int) -> None:
    """Refuses (MESSAGE_TOO_LARGE) a compressed batch that inflates beyond max_bytes (header
    included), which consumers would have to decompress; the broker otherwise reads only
    headers, and decompresses here only as far as the limit."""
    for pos, header in iter_headers(buf, check_crc=False):
        codec = header.attributes & COMPRESSION_MASK
        if not codec:
            continue
        body = bytes(buf[pos + HEADER_SIZE : pos + header.size])
        size = HEADER_SIZE + _compression.decompressed_size_up_to(codec, body, max_bytes - HEADER_SIZE)
        if size > max_bytes:
            raise LogError(
                f"a {_compression.codec_name(codec)} batch of {header.size} bytes inflates beyond "
                f"max.message.bytes={max_bytes}",
                "MESSAGE_TOO_LARGE",
            )


def set_base_offset(buf: bytearray, pos: int, base_offset: int) -> None:
    """Assigns the batch's offsets in place (outside the CRC range, so the CRC stays valid)."""
    _I64.pack_into(buf, pos, base_offset)


def set_partition_leader_epoch(buf: bytearray, pos: int, epoch: int) -> None:
    _I32.pack_into(buf, pos + PARTITION_LEADER_EPOCH_OFFSET, epoch)


# -- decoding ---------------------------------------------------------------------------------


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buf, pos)
    if length < 0:
        return None, pos
    end = pos + length
    if end > len(buf):
        raise CorruptRecordError("record field runs past the end of the batch")
    return buf[pos:end], end


def _read_headers(data: bytes, pos: int, count: int) -> tuple[tuple, int]:
    if count < 0:
        raise CorruptRecordError("negative header count")
    items = []
    for _ in range(count):
        raw_key, pos = _read_bytes(data, pos)
        header_value, pos = _read_bytes(data, pos)
        if raw_key is None:
            raise CorruptRecordError("null header key")
        items.append((raw_key.decode("utf-8", "replace"), header_value))
    return tuple(items), pos


def _decode_records(
    data: bytes, count: int, base_offset: int, base_timestamp: int, log_append_time: int | None
) -> list[Record]:
    """The hot loop of every consumer. Varints of one or two bytes (lengths below 8 KiB,
    offset deltas below 8192: the common case) are decoded inline; longer ones by call."""
    records: list[Record] = []
    append = records.append
    read_varint = decode_varint
    make = Record
    pos = 0
    end = len(data)
    try:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (b & 0x7F) | (data[pos + 1] << 7)
                length = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                length, pos = read_varint(data, pos)
            record_end = pos + length
            if length < 0 or record_end > end:
                raise CorruptRecordError("record length runs past the end of the batch")
            b = data[pos + 1]  # pos: attributes, unused in v2
            if b < 0x80:
                timestamp_delta = (b >> 1) ^ -(b & 1)
                pos += 2
            else:
                timestamp_delta, pos = read_varint(data, pos + 1)
            b = data[pos]
            if b < 0x80:
                offset_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (b & 0x7F) | (data[pos + 1] << 7)
                offset_delta = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                offset_delta, pos = read_varint(data, pos)
            b = data[pos]
            if b == 1:
                key = None
                pos += 1
            elif b < 0x80 and not b & 1:  # odd zigzag: negative, i.e. null (as Kafka reads it)
                size = b >> 1
                key = data[pos + 1 : pos + 1 + size]
                pos += 1 + size
            else:
                key, pos = _read_bytes(data, pos)
            b = data[pos]
            if b == 1:
                value = None
                pos += 1
            elif b < 0x80 and not b & 1:  # odd zigzag: negative, i.e. null (as Kafka reads it)
                size = b >> 1
                value = data[pos + 1 : pos + 1 + size]
                pos += 1 + size
            elif data[pos + 1] < 0x80 and not b & 1:
                size = ((b & 0x7F) | (data[pos + 1] << 7)) >> 1
                value = data[pos + 2 : pos + 2 + size]
                pos += 2 + size
            else:
                value, pos = _read_bytes(data, pos)
            if data[pos] == 0:
                headers = ()
                pos += 1
            else:
                header_count, pos = read_varint(data, pos)
                headers, pos = _read_headers(data, pos, header_count)
            if pos != record_end:
                raise CorruptRecordError("record length does not match its fields")
            append(
                make(
                    base_offset + offset_delta,
                    base_timestamp + timestamp_delta if log_append_time is None else log_append_time,
                    key,
                    value,
                    headers,
                )
            )
    except IndexError:
        raise CorruptRecordError("record runs past the end of the batch") from None
    if pos != end:
        raise CorruptRecordError(f"{end - pos} stray bytes after the last record")
    return records


def _decode_body(buf, pos: int, header: BatchHeader) -> list[Record]:
    body = bytes(buf[pos + HEADER_SIZE : pos + header.size])
    codec = header.attributes & COMPRESSION_MASK
    if codec:
        body = _compression.decompress(codec, body)
    append_time = header.max_timestamp if header.attributes & TIMESTAMP_TYPE_MASK else None
    records = _decode_records(body, header.record_count, header.base_offset, header.base_timestamp, append_time)
    if records and records[-1].offset > header.last_offset:
        raise CorruptRecordError(
            f"record offset {records[-1].offset} is beyond the batch's last offset {header.last_offset}",
            reason="INVALID_RECORD",
        )
    return records


def decode_batch(buf, pos: int = 0) -> tuple[BatchHeader, list[Record]]:
    """Validates and fully decodes the batch at pos."""
    header = read_header(buf, pos)
    return header, _decode_body(buf, pos, header)


class BatchView:
    """A batch whose header is validated (length, CRC) and whose records are decoded only when
    records() is first called: a consumer that needs counts and offsets reads the header alone.
    records() returns what decode_batch would (and raises what it would, on first call)."""

    __slots__ = ("_records", "buffer", "header", "position")

    def __init__(self, buf, pos: int, header: BatchHeader):
        self.buffer = buf  # the batch is buffer[position : position + header.size]
        self.position = pos
        self.header = header
        self._records: list[Record] | None = None

    @property
    def size(self) -> int:
        return self.header.size

    def records(self) -> list[Record]:
        if self._records is None:
            self._records = _decode_body(self.buffer, self.position, self.header)
        return self._records


def iter_batch_views(buf) -> Iterator[BatchView]:
    """Every whole batch in buf as a lazy view (header checked now, records on demand); a partial
    batch at the end (a fetch cut) is ignored."""
    pos = 0
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        size = _I32.unpack_from(buf, pos + 8)[0] + LOG_OVERHEAD
        if pos + size > end:
            return
        view = BatchView(buf, pos, read_header(buf, pos))
        yield view
        pos += size


def iter_batches(buf) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Every batch in buf, decoded; a partial batch at the end (a fetch cut) is ignored."""
    for view in iter_batch_views(buf):
        yield view.header, view.records()
