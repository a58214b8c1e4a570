"""The client's use of the record codec: a batch the producer encoded early (no producer yet)
and stamped later is byte for byte the batch it would have encoded with its producer id and
sequence (the CRC included); the consumer's C-decoded records are what raftlog's codec decodes,
and a malformed batch is still refused with raftlog's own error."""

import struct

import pytest

from raftlog.client import records
from raftlog.log.errors import CorruptRecordError
from raftlog.log.record_batch import CRC_START, HEADER_SIZE, crc32c, encode_batch, iter_batch_views, read_header


@pytest.mark.parametrize("compression", [None, "gzip", "lz4", "zstd"])
def test_stamping_a_producer_gives_the_same_bytes_as_encoding_with_it(compression):
    batch = [(b"k%d" % i, b"v" * i, [("h", b"x")] if i % 2 else [], 1_000 + i) for i in range(40)]
    early = records.encode_batch(batch, compression, -1, -1, -1)
    stamped = records.stamp_producer(early, 4242, 7, 123_456)
    assert stamped == records.encode_batch(batch, compression, 4242, 7, 123_456)
    header = read_header(stamped, 0, True)  # the CRC checks out
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (4242, 7, 123_456)


def _fields(recs) -> list[tuple]:
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in recs]


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("log_append_time", [False, True])
def test_the_consumers_c_decoded_records_are_what_raftlogs_codec_decodes(compression, log_append_time):
    batch = [
        (
            None if i % 7 == 0 else b"k%d" % i,
            None if i % 5 == 0 else b"v" * (i * 37),
            [("h", b"x"), ("n", None)] if i % 3 else [],
            1_000 + (i * 13) % 50,
        )
        for i in range(300)
    ]
    data = encode_batch(batch, compression, base_offset=5_000, log_append_time=log_append_time) + encode_batch(
        batch[:2], compression, base_offset=5_300
    )
    views = list(iter_batch_views(data))
    assert len(views) == 2
    for view in views:
        decoded = records.batch_records(view)
        assert type(decoded[0]).__module__.startswith("aiokafka")  # the C codec read it
        assert _fields(decoded) == _fields(view.records())
    assert [r.offset for r in records.batch_records(views[0])] == list(range(5_000, 5_300))


def test_a_batch_with_a_valid_crc_but_a_malformed_record_is_refused_with_raftlogs_error():
    data = bytearray(encode_batch([(b"key", b"value", [], 1_000), (b"key", b"value", [], 1_001)]))
    data[HEADER_SIZE] = 0x7E  # the first record's length varint: now 63, past the batch's end
    struct.pack_into(">I", data, CRC_START - 4, crc32c(memoryview(data)[CRC_START:]))  # a CRC that matches
    [view] = list(iter_batch_views(bytes(data)))
    with pytest.raises(CorruptRecordError, match="past the end"):
        records.batch_records(view)
