"""Limits, in one place, with the reason for each beside it: message sizes, and what one
request may ask of a node.

A node serves every request on one asyncio event loop; a request whose work grows without
bound (one Fetch naming 100,000 partitions, one CreateTopics of 10,000 partitions) starves
everything else on that loop, including the broker's heartbeats, and a broker that misses its
session is fenced: one request would take a node down. So work per request is capped here,
and long loops over partitions yield to the event loop every YIELD_EVERY_PARTITIONS.

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


# Partitions named in one Produce, Fetch or ListOffsets request. Kafka has no such cap, but a
# Kafka broker has many request handler threads; ours has one loop. 10,000 is far above what a
# client batches into one request (one request per broker, covering the partitions it leads).
MAX_PARTITIONS_PER_DATA_REQUEST = 10_000

# Partitions one CreateTopics or CreatePartitions request may create: each becomes a metadata
# record in one Raft entry (proposed, replicated and applied as one batch) and a log to open on
# every replica. A bigger topic is grown in steps with CreatePartitions.
MAX_PARTITIONS_CREATED_PER_REQUEST = 1_000

# Partitions a topic may have in all (topic creation and growth).
MAX_PARTITIONS_PER_TOPIC = 10_000

# Loops over partitions in one request give the event loop a turn after this many, so heartbeats
# and other requests go on (the work per partition is a lookup and a read from the page cache).
YIELD_EVERY_PARTITIONS = 100

# Reconciliation with metadata opens and deletes logs on a worker thread, and makes partitions
# leader or follower on the event loop, this many at a time: becoming leader fsyncs the partition's
# leader-epoch checkpoint (a few ms on a busy disk), so a chunk stays well under a heartbeat.
RECONCILE_CHUNK_PARTITIONS = 16

assert MAX_PARTITIONS_CREATED_PER_REQUEST <= MAX_PARTITIONS_PER_TOPIC, "one request may not exceed a whole topic"
assert YIELD_EVERY_PARTITIONS < MAX_PARTITIONS_CREATED_PER_REQUEST, "creating a topic must yield at least once"
assert RECONCILE_CHUNK_PARTITIONS <= YIELD_EVERY_PARTITIONS, "reconciliation does slower work per partition"
