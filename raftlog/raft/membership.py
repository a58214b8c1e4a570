"""The voter set as Raft log entries (configuration entries; Kafka's VotersRecord, KIP-853). Pure.

A configuration entry's data is CONFIG_PREFIX and then the whole voter set as JSON (id ->
address, "" when the address is not known to the core). CONFIG_PREFIX starts with a 0x00 byte,
which no protobuf message (what every other entry holds) can start with, since field number 0
is invalid: the two kinds never collide and the storage and transport formats stay as they are.

A node uses the latest configuration in its log, committed or not (Raft dissertation 4.1), and
a change adds or removes one voter at a time, so any majority of the old set and any majority of
the new one overlap. `MembershipError` says why a change is refused, by a raftlog.errors name:
INVALID_REQUEST for a change that can never be made (Kafka's DUPLICATE_VOTER / VOTER_NOT_FOUND,
which this Kafka schema library has no codes for), REQUEST_TIMED_OUT, retriable, for one that must
wait (another change uncommitted, the new voter not caught up), as KIP-853's leader answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

CONFIG_PREFIX = b"\x00raftlog.voters\x00"


class MembershipError(ValueError):
    """A refused voter change; `reason` is the Kafka error name (raftlog.errors.Errors)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def is_config(data: bytes) -> bool:
    return data.startswith(CONFIG_PREFIX)


def encode_voters(voters: Mapping[int, str]) -> bytes:
    assert voters, "a configuration without voters"
    body = {str(node_id): address for node_id, address in sorted(voters.items())}
    return CONFIG_PREFIX + json.dumps(body, separators=(",", ":")).encode()


def decode_voters(data: bytes) -> dict[int, str]:
    assert is_config(data), f"not a configuration entry: {data[:20]!r}"
    body = json.loads(data[len(CONFIG_PREFIX) :])
    voters = {int(node_id): str(address) for node_id, address in body.items()}
    assert voters and min(voters) >= 0, f"a configuration entry with voters {sorted(voters)}"
    return voters


def changed_voters(
    voters: Mapping[int, str], add: tuple[int, str] | None = None, remove: int | None = None
) -> dict[int, str]:
    """The voter set after adding or removing exactly one voter."""
    if (add is None) == (remove is None):
        raise MembershipError("INVALID_REQUEST", "a change adds one voter or removes one, never both or neither")
    result = dict(voters)
    if add is not None:
        node_id, address = add
        if node_id < 0:
            raise MembershipError("INVALID_REQUEST", f"node ids are >= 0, got {node_id}")
        if node_id in result:
            raise MembershipError("DUPLICATE_VOTER", f"node {node_id} is a voter already (voters {sorted(result)})")
        result[node_id] = address
    else:
        assert remove is not None
        if remove not in result:
            raise MembershipError("VOTER_NOT_FOUND", f"node {remove} is not a voter (voters {sorted(result)})")
        if len(result) == 1:
            raise MembershipError("INVALID_REQUEST", f"node {remove} is the last voter")
        del result[remove]
    return result
