"""A batch the producer encoded early (no producer yet) and stamped later is byte for byte the
batch it would have encoded with its producer id and sequence (the CRC included)."""

import pytest

from raftlog.client import records
from raftlog.log.record_batch import read_header


@pytest.mark.parametrize("compression", [None, "gzip", "lz4", "zstd"])
def test_stamping_a_producer_gives_the_same_bytes_as_encoding_with_it(compression):
    batch = [(b"k%d" % i, b"v" * i, [("h", b"x")] if i % 2 else [], 1_000 + i) for i in range(40)]
    early = records.encode_batch(batch, compression, -1, -1, -1)
    stamped = records.stamp_producer(early, 4242, 7, 123_456)
    assert stamped == records.encode_batch(batch, compression, 4242, 7, 123_456)
    header = read_header(stamped, 0, True)  # the CRC checks out
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (4242, 7, 123_456)
