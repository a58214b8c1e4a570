"""The client's use of the RecordBatch v2 codec (raftlog.log.record_batch)."""

from __future__ import annotations

from collections.abc import Iterator

from raftlog.log import compression
from raftlog.log.errors import UnsupportedCompressionError
from raftlog.log.record_batch import NO_PRODUCER_EPOCH, NO_SEQUENCE, encode_batch as _encode, iter_batches


def check_compression(name: str | None) -> None:
    try:
        compression.codec_id(name)
    except UnsupportedCompressionError as exc:
        raise ValueError(exc.message) from None


def encode_batch(records: list[tuple], compression_type: str | None, producer_id: int, producer_epoch: int,
                 base_sequence: int) -> bytes:
    """records: (key, value, headers, timestamp_ms)."""
    return _encode(records, compression_type, producer_id,
                   producer_epoch if producer_id >= 0 else NO_PRODUCER_EPOCH,
                   base_sequence if producer_id >= 0 else NO_SEQUENCE)


def decode_records(data: bytes) -> Iterator[tuple[int, int, bytes | None, bytes | None, list]]:
    """(offset, timestamp, key, value, headers) of every record in whole batches of data."""
    for header, records in iter_batches(data):
        if header.is_control:
            continue
        for record in records:
            yield record.offset, record.timestamp, record.key, record.value, list(record.headers)
