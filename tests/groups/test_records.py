"""__consumer_offsets records: Kafka's byte layouts, round trips, group -> partition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raftlog.groups import records as r


def test_offset_commit_layout_matches_kafkas():
    key = r.encode_offset_key(r.OffsetKey("g", "t", 3))
    assert key == b"\x00\x01" + b"\x00\x01g" + b"\x00\x01t" + b"\x00\x00\x00\x03"
    value = r.encode_offset_value(r.OffsetValue(42, 7, "", 1000))
    assert value == (
        b"\x00\x03" + (42).to_bytes(8, "big") + (7).to_bytes(4, "big") + b"\x00\x00" + (1000).to_bytes(8, "big")
    )
    assert r.decode_key(key) == r.OffsetKey("g", "t", 3)
    assert r.decode_offset_value(value) == r.OffsetValue(42, 7, "", 1000)
    assert r.encode_group_key(r.GroupKey("g")) == b"\x00\x02\x00\x01g"


def test_group_partition_is_kafkas_hash():
    # Values of Java's String.hashCode (well-known ones).
    assert r.java_string_hash("") == 0
    assert r.java_string_hash("a") == 97
    assert r.java_string_hash("hello") == 99162322
    assert r.java_string_hash("abc") == 96354
    assert r.java_string_hash("polygenelubricants") == -(1 << 31)  # Integer.MIN_VALUE: abs() is 0 in Kafka
    assert r.partition_for_group("polygenelubricants", 12) == 0
    assert r.partition_for_group("hello", 50) == 99162322 % 50


member_st = st.builds(
    r.MemberRecord,
    st.text(max_size=10),
    st.none() | st.text(max_size=5),
    st.text(max_size=5),
    st.text(max_size=5),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1),
    st.lists(st.text(max_size=5), max_size=3).map(tuple),
    st.none() | st.text(max_size=5),
    st.integers(0, 2**31 - 1),
    st.lists(st.tuples(st.text(min_size=1, max_size=3), st.integers(0, 100)), max_size=5, unique=True).map(
        lambda tps: tuple(sorted(tps))
    ),
)


@given(epoch=st.integers(0, 2**31 - 1), members=st.lists(member_st, max_size=4))
def test_group_value_round_trip(epoch, members):
    value = r.GroupValue(epoch, "uniform", 123, tuple(members))
    assert r.decode_group_value(r.encode_group_value(value)) == value


def test_describe_record_for_the_dump_tool():
    line = r.describe_record(
        r.encode_offset_key(r.OffsetKey("g", "t", 0)), r.encode_offset_value(r.OffsetValue(5, -1, "", 9))
    )
    assert (
        line
        == "offset_commit::group=g,topic=t,partition=0 payload: offset=5,leader_epoch=-1,metadata='',commit_timestamp=9"
    )
    assert r.describe_record(r.encode_group_key(r.GroupKey("g")), None) == "group_metadata::group=g payload: <DELETE>"
