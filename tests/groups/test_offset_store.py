"""The offset store: rows and the applied offset move together; partitions are independent."""

from __future__ import annotations

import pytest

from raftlog.groups.offset_store import OffsetStore
from raftlog.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "rocksdb")
    yield s
    s.close()


def test_apply_load_tombstone_and_drop(store):
    offsets = OffsetStore(store)
    assert offsets.load(3) == (0, [])
    offsets.apply(3, [(b"k1", b"v1"), (b"k2", b"v2")], 2)
    offsets.apply(4, [(b"k1", b"other")], 1)
    offsets.apply(3, [(b"k1", b"v1b"), (b"k2", None)], 5)  # a newer value and a tombstone
    assert offsets.load(3) == (5, [(b"k1", b"v1b")])
    assert offsets.load(4) == (1, [(b"k1", b"other")])
    offsets.drop(3)
    assert offsets.load(3) == (0, [])
    assert offsets.load(4) == (1, [(b"k1", b"other")])


def test_applied_offset_never_goes_back(store):
    offsets = OffsetStore(store)
    offsets.apply(0, [], 10)
    with pytest.raises(AssertionError, match="go back"):
        offsets.apply(0, [], 9)


def test_survives_a_reopen(tmp_path):
    first = Store(tmp_path / "rocksdb")
    OffsetStore(first).apply(7, [(b"k", b"v")], 3)
    first.close()
    again = Store(tmp_path / "rocksdb")
    try:
        assert OffsetStore(again).load(7) == (3, [(b"k", b"v")])
    finally:
        again.close()
