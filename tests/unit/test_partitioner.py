import random

import pytest

from raftlog.client.partitioner import (
    StickyPartitioner,
    murmur2,
    partition_for_key,
    to_positive,
)

# Values from Kafka's UtilsTest.testMurmur2 (the Java implementation).
KAFKA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize("key, expected", KAFKA_MURMUR2)
def test_murmur2_matches_kafka(key, expected):
    assert murmur2(key) == expected


def test_partition_uses_to_positive_not_abs():
    assert to_positive(-973932308) == -973932308 & 0x7FFFFFFF
    assert partition_for_key(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7


def test_sticky_partitioner_stays_until_the_batch_is_sent_then_moves():
    sticky = StickyPartitioner(random.Random(1))
    first = sticky.partition("t", 5)
    assert all(sticky.partition("t", 5) == first for _ in range(10))
    sticky.batch_sent("t", 5)
    assert sticky.partition("t", 5) != first
    sticky.batch_sent("t", 1)
    assert sticky.partition("t", 1) == 0
