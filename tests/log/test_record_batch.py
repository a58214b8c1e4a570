"""RecordBatch v2: byte-exact fixtures worked out by hand, property round trips, bad input, fuzz."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog.log.errors import CorruptRecordError, LogError
from raftlog.log.record_batch import (
    HEADER_SIZE,
    decode_batch,
    decode_varint,
    encode_batch,
    encode_varint,
    iter_batch_views,
    iter_batches,
    iter_headers,
    read_header,
    set_base_offset,
    set_partition_leader_epoch,
)


def crc32c_reference(data: bytes) -> int:
    """Bit-by-bit CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), independent of the codec's."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# One record, key b"k", value b"v", no headers, timestamp 1000, no producer, no compression.
# The record: length 8 (zigzag 16 = 0x10), attributes 0, timestampDelta 0, offsetDelta 0,
# keyLength 1 (zigzag 0x02) 'k', valueLength 1 (0x02) 'v', header count 0.
RECORD = bytes.fromhex("10 00 00 00 02 6b 02 76 00")
HEADER_BEFORE_CRC = bytes.fromhex(
    "0000000000000000"  # baseOffset 0
    "0000003a"  # batchLength: 61 - 12 + 9 = 58
    "ffffffff"  # partitionLeaderEpoch -1
    "02"  # magic
)
AFTER_CRC = (
    bytes.fromhex(
        "0000"  # attributes: no compression, CreateTime
        "00000000"  # lastOffsetDelta 0
        "00000000000003e8"  # baseTimestamp 1000
        "00000000000003e8"  # maxTimestamp 1000
        "ffffffffffffffff"  # producerId -1
        "ffff"  # producerEpoch -1
        "ffffffff"  # baseSequence -1
        "00000001"  # one record
    )
    + RECORD
)


def test_byte_exact_single_record_batch():
    crc = crc32c_reference(AFTER_CRC).to_bytes(4, "big")
    expected = HEADER_BEFORE_CRC + crc + AFTER_CRC
    assert encode_batch([(b"k", b"v", None, 1000)]) == expected
    header, records = decode_batch(expected)
    assert (header.base_offset, header.record_count, header.max_timestamp) == (0, 1, 1000)
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in records] == [(0, 1000, b"k", b"v", ())]


def test_byte_exact_null_key_header_and_producer_fields():
    # Record: length, attrs 0, tsDelta 5 (zigzag 10 = 0x0a), offsetDelta 1 (0x02), key null (-1 = 0x01),
    # value "" (0x00), one header (0x02): key "h" (0x02 68), value null (0x01).
    second = bytes.fromhex("00 0a 02 01 00 02 02 68 01")
    first = bytes.fromhex("00 00 00 02 61 02 62 00")
    records_part = bytes([len(first) * 2]) + first + bytes([len(second) * 2]) + second
    batch = encode_batch(
        [(b"a", b"b", None, 100), (None, b"", [("h", None)], 105)], producer_id=7, producer_epoch=2, base_sequence=40
    )
    assert batch[HEADER_SIZE:] == records_part
    assert batch[23:27] == (1).to_bytes(4, "big")  # lastOffsetDelta
    assert batch[43:51] == (7).to_bytes(8, "big") and batch[51:53] == (2).to_bytes(2, "big")
    assert batch[53:57] == (40).to_bytes(4, "big") and batch[57:61] == (2).to_bytes(4, "big")
    assert int.from_bytes(batch[17:21], "big") == crc32c_reference(batch[21:])


@pytest.mark.parametrize("value", [0, 1, -1, 63, -64, 64, 300, -300, 2**31 - 1, -(2**31), 2**62, -(2**63)])
def test_zigzag_varints(value):
    encoded = encode_varint(value)
    assert decode_varint(encoded, 0) == (value, len(encoded))
    if value in (0, -1, 1):
        assert encoded == {0: b"\x00", -1: b"\x01", 1: b"\x02"}[value]


records_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), st.binary(max_size=40)),
        st.one_of(st.none(), st.binary(max_size=300)),
        st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=16))), max_size=3),
        st.integers(min_value=0, max_value=2**41),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    records=records_strategy,
    compression=st.sampled_from([None, "gzip", "snappy", "lz4", "zstd"]),
    producer=st.booleans(),
)
def test_round_trip_every_codec(records, compression, producer):
    fields = dict(producer_id=99, producer_epoch=3, base_sequence=12) if producer else {}
    batch = encode_batch(records, compression, **fields)
    header, decoded = decode_batch(batch)
    assert header.record_count == len(records) and header.compression == (compression or "none")
    assert [(r.key, r.value, list(r.headers), r.timestamp) for r in decoded] == [
        (k, v, [(hk, hv) for hk, hv in h], ts) for k, v, h, ts in records
    ]
    assert [r.offset for r in decoded] == list(range(len(records)))
    assert header.max_timestamp == max(r[3] for r in records)


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(
        st.tuples(records_strategy, st.sampled_from([None, "gzip", "lz4", "zstd"]), st.integers(0, 2**40)),
        min_size=1,
        max_size=4,
    ),
    cut=st.integers(min_value=0, max_value=60),
)
def test_lazy_batch_views_agree_with_decode_batch(batches, cut):
    """A fetch's bytes (several batches, the last one possibly cut off): each view's header and
    records are exactly what decode_batch gives, and the cut batch is left out as iter_batches does."""
    encoded = []
    for records, compression, base_offset in batches:
        batch = bytearray(encode_batch(records, compression))
        set_base_offset(batch, 0, base_offset)
        encoded.append(bytes(batch))
    data = b"".join(encoded)
    data = data[: len(data) - cut] if cut else data
    views = list(iter_batch_views(data))
    whole = [b for i, b in enumerate(encoded) if sum(map(len, encoded[: i + 1])) <= len(data)]
    assert len(views) == len(whole)
    for view, batch in zip(views, whole):
        header, records = decode_batch(batch)
        assert view.header == header and view.size == len(batch)
        assert view.records() == records and view.records() is view.records()  # decoded once
    assert [(h, r) for h, r in iter_batches(data)] == [decode_batch(b) for b in whole]


def test_a_lazy_view_of_a_corrupt_body_fails_on_access_like_decode_batch():
    batch = bytearray(encode_batch([(b"k", b"v", None, 5)] * 3))
    batch[-3] ^= 0x40  # inside the records: the CRC check on the header catches it at once
    with pytest.raises(CorruptRecordError):
        list(iter_batch_views(bytes(batch)))


def test_broker_rewrites_offset_and_epoch_without_touching_the_crc():
    batch = bytearray(encode_batch([(b"k", b"v", None, 5)] * 3))
    set_base_offset(batch, 0, 1000)
    set_partition_leader_epoch(batch, 0, 7)
    header = read_header(batch)  # the CRC still holds
    assert (header.base_offset, header.last_offset, header.partition_leader_epoch) == (1000, 1002, 7)
    assert [r.offset for r in decode_batch(batch)[1]] == [1000, 1001, 1002]


def test_any_negative_key_or_value_length_reads_as_null_like_kafka():
    """Kafka's DefaultRecord reads a negative key/value size as null; the inline fast path must agree."""
    import crc32c

    batch = bytearray(encode_batch([(None, None, None, 5)]))
    record_start = HEADER_SIZE + 1  # after the record's length varint
    key_at = record_start + 3  # attributes, timestamp delta, offset delta: one byte each here
    assert batch[key_at : key_at + 2] == b"\x01\x01"  # both null (-1)
    batch[key_at], batch[key_at + 1] = 0x03, 0x05  # -2 and -3
    batch[17:21] = crc32c.crc32c(bytes(batch[21:])).to_bytes(4, "big")
    [record] = decode_batch(bytes(batch))[1]
    assert (record.key, record.value) == (None, None)


def corrupt(batch: bytes, position: int, value: int) -> bytes:
    mutated = bytearray(batch)
    mutated[position] = value
    return bytes(mutated)


@pytest.mark.parametrize(
    "mutation, reason",
    [
        (lambda b: corrupt(b, len(b) - 1, b[-1] ^ 0xFF), "CORRUPT_MESSAGE"),  # payload byte: CRC
        (lambda b: corrupt(b, 16, 1), "UNSUPPORTED_VERSION"),  # magic 1
        (lambda b: b[:-3], "CORRUPT_MESSAGE"),  # cut short
        (lambda b: b[:8] + (10).to_bytes(4, "big") + b[12:], "CORRUPT_MESSAGE"),  # length below minimum
    ],
)
def test_bad_batches_are_refused_with_a_reason(mutation, reason):
    batch = encode_batch([(b"key", b"value", None, 1)])
    with pytest.raises(LogError) as info:
        decode_batch(mutation(batch))
    assert info.value.reason == reason


def _with_fields(batch: bytes, **fields) -> bytes:
    """Overwrites header fields and fixes the CRC, so only the inconsistency is wrong."""
    from raftlog.log.record_batch import crc32c

    mutated = bytearray(batch)
    spans = {"last_offset_delta": (23, 27), "record_count": (57, 61)}
    for name, value in fields.items():
        start, end = spans[name]
        mutated[start:end] = value.to_bytes(end - start, "big", signed=True)
    mutated[17:21] = crc32c(bytes(mutated[21:])).to_bytes(4, "big")
    return bytes(mutated)


@pytest.mark.parametrize("fields", [{"last_offset_delta": 0}, {"record_count": 0}, {"record_count": -3}])
def test_inconsistent_offsets_are_refused(fields):
    batch = encode_batch([(b"k", b"v", None, 1)] * 2)
    with pytest.raises(CorruptRecordError) as info:
        read_header(_with_fields(batch, **fields))
    assert info.value.reason == "INVALID_RECORD"


def test_records_beyond_the_batch_offset_range_are_refused():
    batch = encode_batch([(b"k", b"v", None, 1)] * 3)
    with pytest.raises(CorruptRecordError):
        decode_batch(_with_fields(batch, last_offset_delta=1, record_count=2))


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_give_a_clear_error_or_a_valid_batch(data):
    try:
        for _, header in iter_headers(data):
            assert header.magic == 2
        if len(data) >= HEADER_SIZE:
            decode_batch(data)
    except LogError:
        pass


def test_fuzz_mutated_valid_batches_never_crash():
    rng = random.Random(7)
    batches = [
        encode_batch([(b"k%d" % i, b"v" * rng.randrange(200), [("h", b"x")], i) for i in range(n)], c)
        for n in (1, 5, 30)
        for c in (None, "gzip", "lz4", "zstd", "snappy")
    ]
    for _ in range(3000):
        batch = bytearray(rng.choice(batches))
        for _ in range(rng.randint(1, 4)):
            batch[rng.randrange(len(batch))] = rng.randrange(256)
        if rng.random() < 0.3:
            batch = batch[: rng.randrange(len(batch))]
        try:
            decode_batch(bytes(batch))
        except LogError:
            pass


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_compressed_batch_that_inflates_beyond_the_limit_is_refused(codec):
    """Issue 9 §6: a small compressed batch inflating far beyond max.message.bytes was accepted
    for consumers to decompress. The check streams and stops at the limit."""
    from raftlog.log import compression
    from raftlog.log.record_batch import check_uncompressed_size

    limit = 1024 * 1024
    bomb = encode_batch([(None, bytes(8 * limit), None, 0)], compression=codec)
    assert len(bomb) < limit
    with pytest.raises(LogError) as refused:
        check_uncompressed_size(bomb, limit)
    assert refused.value.reason == "MESSAGE_TOO_LARGE"
    body = bomb[HEADER_SIZE:]
    assert compression.decompressed_size_up_to(compression.codec_id(codec), body, limit) == limit + 1
    check_uncompressed_size(bomb, 9 * limit)  # within a larger limit it passes
    fits = encode_batch([(b"k", b"v" * 1000, None, 0)] * 50, compression=codec)
    check_uncompressed_size(fits, 100_000)
    assert (
        compression.decompressed_size_up_to(compression.codec_id(codec), fits[HEADER_SIZE:], 10**6)
        == len(encode_batch([(b"k", b"v" * 1000, None, 0)] * 50)) - HEADER_SIZE
    )
