"""Message size limits, in one place, with the reason for each beside it.

Pure (no grpc): the Raft core sizes its appends from these. The relations between them are
asserted below, so a change that breaks one fails at import.
"""

from __future__ import annotations

MIB = 1024 * 1024

# Largest gRPC message any raftlog server accepts and any channel sends, Raft included. It bounds
# the memory one call can pin; gRPC refuses anything larger (RESOURCE_EXHAUSTED) on either side,
# so a sender must never build a bigger one: Raft batches and chunks to fit (raft/transport.py).
MAX_MESSAGE_BYTES = 64 * MIB

# Room a Raft message batch needs around its payload: the batch's cluster id and sender, one
# message's fixed fields. Per-entry framing is counted separately (RAFT_ENTRY_OVERHEAD_BYTES).
RAFT_ENVELOPE_BYTES = 1024

# Protobuf framing of one RaftEntry inside a message: field tags, the term and index varints
# (at most 10 bytes each), the data length prefix, the entry's own length prefix.
RAFT_ENTRY_OVERHEAD_BYTES = 32

# Largest Raft proposal (one metadata batch, or a `perf quorum` no-op payload). Kept well below
# a message so an append of one entry always fits.
MAX_RAFT_ENTRY_BYTES = 8 * MIB


# `raftlog perf quorum` (AdminService.BenchmarkQuorum) makes the active controller commit
# no-op records: each writer is a task and each payload sits in the Raft log and in every
# voter's memory until compaction, so a client could otherwise exhaust the controller.
MAX_BENCHMARK_WRITES = 1_000_000
MAX_BENCHMARK_CONCURRENCY = 1024
MAX_BENCHMARK_PAYLOAD_BYTES = 1 * MIB


def raft_payload_bytes(max_message_bytes: int) -> int:
    """Entry data (with framing) or snapshot bytes one Raft message may carry under that limit."""
    return max_message_bytes - RAFT_ENVELOPE_BYTES


assert MAX_RAFT_ENTRY_BYTES + RAFT_ENTRY_OVERHEAD_BYTES <= raft_payload_bytes(MAX_MESSAGE_BYTES), \
    "one maximal entry must fit in one Raft message"
assert MAX_BENCHMARK_PAYLOAD_BYTES < MAX_RAFT_ENTRY_BYTES, "a benchmark no-op (payload + batch framing) is one entry"
