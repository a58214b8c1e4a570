"""Kafka's default partitioner: murmur2 of the key; sticky partitions for null keys.

murmur2 here is bit-for-bit Kafka's ``Utils.murmur2`` (seed 0x9747b28c, little-endian
4-byte blocks, signed 32-bit result), so a key lands on the same partition number as it
would with a Java producer.
"""

from __future__ import annotations

import random

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2: a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    blocks = length // 4
    for i in range(blocks):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = data[4 * blocks :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(value: int) -> int:
    """Kafka's Utils.toPositive: clears the sign bit (not abs)."""
    return value & 0x7FFFFFFF


def partition_for_key(key: bytes, partition_count: int) -> int:
    return to_positive(murmur2(key)) % partition_count


class StickyPartitioner:
    """For null keys: stay on one partition until its batch is sent, then pick another (KIP-480)."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()
        self._current: dict[str, int] = {}

    def partition(self, topic: str, partition_count: int) -> int:
        if topic not in self._current or self._current[topic] >= partition_count:
            self._current[topic] = self._rng.randrange(partition_count)
        return self._current[topic]

    def batch_sent(self, topic: str, partition_count: int) -> None:
        """Moves to a different partition (when there is more than one)."""
        previous = self._current.get(topic)
        choice = self._rng.randrange(partition_count)
        if partition_count > 1 and choice == previous:
            choice = (choice + 1 + self._rng.randrange(partition_count - 1)) % partition_count
        self._current[topic] = choice
