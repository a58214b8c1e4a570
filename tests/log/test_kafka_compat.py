"""Byte compatibility with an independent RecordBatch v2 implementation: kafka-python's.

kafka-python is only a test oracle here: batches we encode must be read by it (CRC valid,
same records and header fields), batches it encodes must be read by us, for every codec;
uncompressed batches must be byte-identical (kafka-python stamps partitionLeaderEpoch 0
where the Java producer and we write -1, so that field is aligned before comparing).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from raftlog.log.record_batch import (
    decode_batch,
    encode_batch,
    set_partition_leader_epoch,
)
from tests.log.test_record_batch import records_strategy

CODECS = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
PRODUCER = {"producer_id": 4242, "producer_epoch": 7, "base_sequence": 1000}


def kafka_python_encode(records, compression: str | None) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=CODECS[compression], is_transactional=False, batch_size=1 << 24, **PRODUCER
    )
    for offset, (key, value, headers, timestamp) in enumerate(records):
        builder.append(offset, timestamp=timestamp, key=key, value=value, headers=list(headers))
    return bytes(builder.build())


@settings(max_examples=120, deadline=None)
@given(records=records_strategy, compression=st.sampled_from(list(CODECS)))
def test_kafka_python_reads_what_we_write(records, compression):
    ours = encode_batch(records, compression, **PRODUCER)
    theirs = DefaultRecordBatch(bytearray(ours))
    assert theirs.validate_crc()
    assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == tuple(PRODUCER.values())
    assert theirs.compression_type == CODECS[compression]
    assert theirs.last_offset_delta == len(records) - 1
    assert [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in theirs] == [
        (i, ts, k, v, list(h)) for i, (k, v, h, ts) in enumerate(records)
    ]


@settings(max_examples=120, deadline=None)
@given(records=records_strategy, compression=st.sampled_from(list(CODECS)))
def test_we_read_what_kafka_python_writes(records, compression):
    header, decoded = decode_batch(kafka_python_encode(records, compression))
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == tuple(PRODUCER.values())
    # kafka-python leaves a batch uncompressed when compression would make it larger.
    assert header.compression in (compression or "none", "none") and header.record_count == len(records)
    assert [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in decoded] == [
        (i, ts, k, v, list(h)) for i, (k, v, h, ts) in enumerate(records)
    ]


@settings(max_examples=120, deadline=None)
@given(records=records_strategy)
def test_uncompressed_batches_are_byte_identical(records):
    ours = bytearray(encode_batch(records, None, **PRODUCER))
    set_partition_leader_epoch(ours, 0, 0)  # outside the CRC: the CRC must match as it is
    assert bytes(ours) == kafka_python_encode(records, None)
