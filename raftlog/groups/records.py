"""The records of ``__consumer_offsets`` in Kafka's key/value layouts, and group -> partition.

Big-endian, as Kafka's generated message classes write them (non-flexible versions):

- OffsetCommitKey (key version 1): group string, topic string, partition int32;
  OffsetCommitValue v3: offset int64, leader_epoch int32, metadata string, commit_timestamp int64.
- GroupMetadataKey (key version 2): group string;
  GroupMetadataValue v3: protocol_type string ("consumer"), generation int32 (the group epoch),
  protocol nullable string (the assignor), leader nullable string (null), current_state_timestamp
  int64, members [member_id string, group_instance_id nullable string, client_id string,
  client_host string, rebalance_timeout int32, session_timeout int32, subscription bytes,
  assignment bytes]. subscription is a ConsumerProtocolSubscription v0 (topics [string],
  user_data: the subscription regex, if any, as UTF-8); assignment a ConsumerProtocolAssignment v0
  ([topic string, partitions [int32]], user_data: the member epoch as int32).

Classic groups (JoinGroup/SyncGroup, ``raftlog.groups.classic``) are written as Kafka writes
them: GroupMetadataKey v2 and GroupMetadataValue **v4** (Kafka's newest version, the first flexible
one: compact strings/bytes/arrays with unsigned-varint lengths + 1, an empty tagged-field section
after each struct), with the member's protocol metadata and assignment as the client sent them.
The value version tells the group's type on restore: v4 is a classic group, v3 a consumer-type
group (raftlog's KIP-848 groups, which Kafka keeps in records of their own).

A value of None (a tombstone) deletes the key: a deleted group, or deleted offsets; compaction
keeps only the newest value per key. Strings are int16 length + UTF-8 (-1: null), bytes int32
length, arrays int32 count.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OFFSET_COMMIT_KEY_VERSION = 1
OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_KEY_VERSION = 2
GROUP_METADATA_VALUE_VERSION = 3
CLASSIC_GROUP_VALUE_VERSION = 4
NO_LEADER_EPOCH = -1

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class RecordFormatError(ValueError):
    """Bytes that are not one of the records this module knows."""


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class MemberRecord:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscribed_topics: tuple[str, ...]
    subscribed_regex: str | None
    member_epoch: int
    assigned: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class GroupValue:
    group_epoch: int
    assignor: str
    state_timestamp_ms: int
    members: tuple[MemberRecord, ...]


@dataclass(frozen=True, slots=True)
class ClassicMemberRecord:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes  # the member's metadata for the group's protocol, as the client sent it
    assignment: bytes  # what the leader assigned it, as the leader sent it


@dataclass(frozen=True, slots=True)
class ClassicGroupValue:
    protocol_type: str
    generation: int
    protocol: str | None  # the protocol chosen for this generation (None: an empty group)
    leader: str | None
    state_timestamp_ms: int
    members: tuple[ClassicMemberRecord, ...]


# -- primitives -----------------------------------------------------------------------------------


def _string(value: str | None) -> bytes:
    if value is None:
        return _I16.pack(-1)
    raw = value.encode()
    if len(raw) > 0x7FFF:
        raise RecordFormatError(f"a string of {len(raw)} bytes does not fit an int16 length")
    return _I16.pack(len(raw)) + raw


def _bytes(value: bytes | None) -> bytes:
    return _I32.pack(-1) if value is None else _I32.pack(len(value)) + value


def _uvarint(value: int) -> bytes:
    assert value >= 0, f"an unsigned varint of {value}"
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _compact_bytes(value: bytes | None) -> bytes:
    return b"\x00" if value is None else _uvarint(len(value) + 1) + value


def _compact_string(value: str | None) -> bytes:
    return _compact_bytes(None if value is None else value.encode())


_NO_TAGS = b"\x00"  # an empty tagged-field section


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise RecordFormatError(f"record ends at byte {len(self.data)}, {size} more needed at {self.pos}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def i16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def i32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def i64(self) -> int:
        return _I64.unpack(self._take(8))[0]

    def string(self) -> str | None:
        size = self.i16()
        return None if size == -1 else self._take(size).decode()

    def bytes_(self) -> bytes | None:
        size = self.i32()
        return None if size == -1 else self._take(size)

    def count(self) -> int:
        n = self.i32()
        if n < 0 or n > len(self.data):
            raise RecordFormatError(f"array count {n} is not plausible")
        return n

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise RecordFormatError("an unsigned varint longer than 5 bytes")

    def compact_bytes(self) -> bytes | None:
        size = self.uvarint()
        return None if size == 0 else self._take(size - 1)

    def compact_string(self) -> str | None:
        raw = self.compact_bytes()
        return None if raw is None else raw.decode()

    def compact_count(self) -> int:
        n = self.uvarint() - 1
        if n < 0 or n > len(self.data):
            raise RecordFormatError(f"compact array count {n} is not plausible")
        return n

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # the tag
            self._take(self.uvarint())

    def done(self) -> None:
        if self.pos != len(self.data):
            raise RecordFormatError(f"{len(self.data) - self.pos} bytes left over")


# -- keys and values ------------------------------------------------------------------------------


def encode_offset_key(key: OffsetKey) -> bytes:
    return _I16.pack(OFFSET_COMMIT_KEY_VERSION) + _string(key.group) + _string(key.topic) + _I32.pack(key.partition)


def encode_offset_value(value: OffsetValue) -> bytes:
    return (
        _I16.pack(OFFSET_COMMIT_VALUE_VERSION)
        + _I64.pack(value.offset)
        + _I32.pack(value.leader_epoch)
        + _string(value.metadata)
        + _I64.pack(value.commit_timestamp_ms)
    )


def encode_group_key(key: GroupKey) -> bytes:
    return _I16.pack(GROUP_METADATA_KEY_VERSION) + _string(key.group)


def _subscription(member: MemberRecord) -> bytes:
    topics = b"".join(_string(t) for t in member.subscribed_topics)
    regex = None if member.subscribed_regex is None else member.subscribed_regex.encode()
    return _I16.pack(0) + _I32.pack(len(member.subscribed_topics)) + topics + _bytes(regex)


def _assignment(member: MemberRecord) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(member.assigned):
        by_topic.setdefault(topic, []).append(partition)
    parts = [_I16.pack(0), _I32.pack(len(by_topic))]
    for topic, partitions in by_topic.items():
        parts.append(_string(topic) + _I32.pack(len(partitions)) + b"".join(_I32.pack(p) for p in partitions))
    parts.append(_bytes(_I32.pack(member.member_epoch)))
    return b"".join(parts)


def encode_group_value(value: GroupValue) -> bytes:
    parts = [
        _I16.pack(GROUP_METADATA_VALUE_VERSION),
        _string("consumer"),
        _I32.pack(value.group_epoch),
        _string(value.assignor),
        _string(None),
        _I64.pack(value.state_timestamp_ms),
        _I32.pack(len(value.members)),
    ]
    for m in value.members:
        parts += [
            _string(m.member_id),
            _string(m.instance_id),
            _string(m.client_id),
            _string(m.client_host),
            _I32.pack(m.rebalance_timeout_ms),
            _I32.pack(m.session_timeout_ms),
            _bytes(_subscription(m)),
            _bytes(_assignment(m)),
        ]
    return b"".join(parts)


def encode_classic_group_value(value: ClassicGroupValue) -> bytes:
    parts = [
        _I16.pack(CLASSIC_GROUP_VALUE_VERSION),
        _compact_string(value.protocol_type),
        _I32.pack(value.generation),
        _compact_string(value.protocol),
        _compact_string(value.leader),
        _I64.pack(value.state_timestamp_ms),
        _uvarint(len(value.members) + 1),
    ]
    for m in value.members:
        parts += [
            _compact_string(m.member_id),
            _compact_string(m.instance_id),
            _compact_string(m.client_id),
            _compact_string(m.client_host),
            _I32.pack(m.rebalance_timeout_ms),
            _I32.pack(m.session_timeout_ms),
            _compact_bytes(m.subscription),
            _compact_bytes(m.assignment),
            _NO_TAGS,
        ]
    parts.append(_NO_TAGS)
    return b"".join(parts)


def decode_classic_group_value(data: bytes) -> ClassicGroupValue:
    reader = _Reader(data)
    version = reader.i16()
    if version != CLASSIC_GROUP_VALUE_VERSION:
        raise RecordFormatError(f"classic group metadata value version {version}; this reader knows 4")
    protocol_type = reader.compact_string() or ""
    generation = reader.i32()
    protocol, leader = reader.compact_string(), reader.compact_string()
    timestamp = reader.i64()
    members = []
    for _ in range(reader.compact_count()):
        member_id, instance_id = reader.compact_string() or "", reader.compact_string()
        client_id, client_host = reader.compact_string() or "", reader.compact_string() or ""
        rebalance_timeout, session_timeout = reader.i32(), reader.i32()
        subscription, assignment = reader.compact_bytes() or b"", reader.compact_bytes() or b""
        reader.skip_tags()
        members.append(
            ClassicMemberRecord(
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                subscription,
                assignment,
            )
        )
    reader.skip_tags()
    reader.done()
    return ClassicGroupValue(protocol_type, generation, protocol, leader, timestamp, tuple(members))


def decode_any_group_value(data: bytes) -> GroupValue | ClassicGroupValue:
    """A group's value by its version: v4 a classic group, v3 a consumer-type group."""
    if len(data) >= 2 and _I16.unpack_from(data)[0] == CLASSIC_GROUP_VALUE_VERSION:
        return decode_classic_group_value(data)
    return decode_group_value(data)


def decode_key(data: bytes) -> OffsetKey | GroupKey:
    reader = _Reader(data)
    version = reader.i16()
    if version in (0, 1):
        group, topic = reader.string(), reader.string()
        key: OffsetKey | GroupKey = OffsetKey(group or "", topic or "", reader.i32())
    elif version == 2:
        key = GroupKey(reader.string() or "")
    else:
        raise RecordFormatError(f"key version {version} is not an offset commit (0, 1) or group metadata (2) key")
    reader.done()
    return key


def decode_offset_value(data: bytes) -> OffsetValue:
    reader = _Reader(data)
    version = reader.i16()
    if version != OFFSET_COMMIT_VALUE_VERSION:
        raise RecordFormatError(f"offset commit value version {version}; this reader knows 3")
    value = OffsetValue(reader.i64(), reader.i32(), reader.string() or "", reader.i64())
    reader.done()
    return value


def _decode_subscription(data: bytes) -> tuple[tuple[str, ...], str | None]:
    reader = _Reader(data)
    reader.i16()
    topics = tuple(reader.string() or "" for _ in range(reader.count()))
    regex = reader.bytes_()
    return topics, None if regex is None else regex.decode()


def _decode_assignment(data: bytes) -> tuple[tuple[tuple[str, int], ...], int]:
    reader = _Reader(data)
    reader.i16()
    assigned = []
    for _ in range(reader.count()):
        topic = reader.string() or ""
        assigned += [(topic, reader.i32()) for _ in range(reader.count())]
    user_data = reader.bytes_()
    epoch = _I32.unpack(user_data)[0] if user_data and len(user_data) == 4 else 0
    return tuple(assigned), epoch


def encode_consumer_subscription(topics: tuple[str, ...]) -> bytes:
    """A ConsumerProtocolSubscription v0 (topics, no user data), as a classic consumer sends it."""
    return _I16.pack(0) + _I32.pack(len(topics)) + b"".join(_string(t) for t in topics) + _bytes(None)


def encode_consumer_assignment(assigned: tuple[tuple[str, int], ...]) -> bytes:
    """A ConsumerProtocolAssignment v0 (no user data), as a classic group leader sends it."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(assigned):
        by_topic.setdefault(topic, []).append(partition)
    parts = [_I16.pack(0), _I32.pack(len(by_topic))]
    for topic, partitions in by_topic.items():
        parts.append(_string(topic) + _I32.pack(len(partitions)) + b"".join(_I32.pack(p) for p in partitions))
    parts.append(_bytes(None))
    return b"".join(parts)


def consumer_protocol_topics(subscription: bytes) -> tuple[str, ...]:
    """The topics of a classic consumer's ConsumerProtocolSubscription (any version: they all
    start with version, topics); () for metadata that is not one."""
    try:
        return _decode_subscription(subscription)[0] if subscription else ()
    except (RecordFormatError, UnicodeDecodeError):
        return ()


def consumer_protocol_partitions(assignment: bytes) -> tuple[tuple[str, int], ...]:
    """The partitions of a classic consumer's ConsumerProtocolAssignment (any version: they all
    start with version, [topic, [partition]]); () for an assignment that is not one."""
    try:
        return _decode_assignment(assignment)[0] if assignment else ()
    except (RecordFormatError, UnicodeDecodeError):
        return ()


def decode_group_value(data: bytes) -> GroupValue:
    reader = _Reader(data)
    version = reader.i16()
    if version != GROUP_METADATA_VALUE_VERSION:
        raise RecordFormatError(f"group metadata value version {version}; this reader knows 3")
    reader.string()  # protocol type
    epoch = reader.i32()
    assignor = reader.string() or ""
    reader.string()  # leader: none in the consumer protocol
    timestamp = reader.i64()
    members = []
    for _ in range(reader.count()):
        member_id, instance_id = reader.string() or "", reader.string()
        client_id, client_host = reader.string() or "", reader.string() or ""
        rebalance_timeout, session_timeout = reader.i32(), reader.i32()
        topics, regex = _decode_subscription(reader.bytes_() or b"")
        assigned, member_epoch = _decode_assignment(reader.bytes_() or b"")
        members.append(
            MemberRecord(
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                topics,
                regex,
                member_epoch,
                assigned,
            )
        )
    reader.done()
    return GroupValue(epoch, assignor, timestamp, tuple(members))


# -- group -> partition ---------------------------------------------------------------------------


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units, int32 overflow)."""
    h = 0
    raw = text.encode("utf-16-be")
    for i in range(0, len(raw), 2):
        h = (31 * h + ((raw[i] << 8) | raw[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for_group(group_id: str, partitions: int) -> int:
    """Kafka's ``Utils.abs(groupId.hashCode()) % partitions`` (abs(MIN_VALUE) is 0 there)."""
    assert partitions > 0, f"the offsets topic has {partitions} partitions"
    h = java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def describe_record(key: bytes | None, value: bytes | None) -> str:
    """One line for `raftlog log dump --offsets-decoder` (kafka-dump-log's decoder)."""
    if key is None:
        return "key: null (not an offsets record)"
    try:
        decoded = decode_key(key)
        if isinstance(decoded, OffsetKey):
            head = f"offset_commit::group={decoded.group},topic={decoded.topic},partition={decoded.partition}"
            if value is None:
                return f"{head} payload: <DELETE>"
            v = decode_offset_value(value)
            return (
                f"{head} payload: offset={v.offset},leader_epoch={v.leader_epoch},metadata={v.metadata!r},"
                f"commit_timestamp={v.commit_timestamp_ms}"
            )
        head = f"group_metadata::group={decoded.group}"
        if value is None:
            return f"{head} payload: <DELETE>"
        any_value = decode_any_group_value(value)
        if isinstance(any_value, ClassicGroupValue):
            members = ";".join(
                f"{m.member_id}(instance={m.instance_id},assigned="
                f"{','.join(f'{t}-{p}' for t, p in consumer_protocol_partitions(m.assignment))})"
                for m in any_value.members
            )
            return (
                f"{head} payload: classic,protocol_type={any_value.protocol_type},generation={any_value.generation},"
                f"protocol={any_value.protocol},leader={any_value.leader},members=[{members}]"
            )
        g = decode_group_value(value)
        members = ";".join(
            f"{m.member_id}(epoch={m.member_epoch},instance={m.instance_id},"
            f"assigned={','.join(f'{t}-{p}' for t, p in m.assigned)})"
            for m in g.members
        )
        return f"{head} payload: epoch={g.group_epoch},assignor={g.assignor},members=[{members}]"
    except (RecordFormatError, UnicodeDecodeError, struct.error) as exc:
        return f"undecodable offsets record: {exc}"
