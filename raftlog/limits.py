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

KIB = 1024
MIB = 1024 * KIB

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


assert MAX_RAFT_ENTRY_BYTES + RAFT_ENTRY_OVERHEAD_BYTES <= raft_payload_bytes(MAX_MESSAGE_BYTES), (
    "one maximal entry must fit in one Raft message"
)
assert MAX_BENCHMARK_PAYLOAD_BYTES < MAX_RAFT_ENTRY_BYTES, "a benchmark no-op (payload + batch framing) is one entry"


# Partitions named in one Produce, Fetch or ListOffsets request. Kafka has no such cap, but a
# Kafka broker has many request handler threads; ours has one loop. 10,000 is far above what a
# client batches into one request (one request per broker, covering the partitions it leads).
MAX_PARTITIONS_PER_DATA_REQUEST = 10_000

# Partitions one CreateTopics or CreatePartitions request may create: each becomes a metadata
# record in one Raft entry (proposed, replicated and applied as one batch) and a log to open on
# every replica. A bigger topic is grown in steps with CreatePartitions.
MAX_PARTITIONS_CREATED_PER_REQUEST = 1_000
# Partitions one AlterPartitionReassignments may start or cancel: one record each, in one Raft
# entry (the plan applies whole), like a CreatePartitions. A bigger plan goes in several files.
MAX_PARTITIONS_REASSIGNED_PER_REQUEST = MAX_PARTITIONS_CREATED_PER_REQUEST

# ACL bindings one CreateAcls request may add (or filters one DeleteAcls may name): each binding
# is a metadata record of the one Raft entry the request commits (a few hundred bytes each, far
# inside MAX_RAFT_ENTRY_BYTES), and every node rebuilds its authorizer when they apply.
MAX_ACL_BINDINGS_PER_REQUEST = 1_000

# Authorization answers one authorizer remembers (caller, operation, resource -> allowed), so a
# produce or fetch checks with one lookup; when full it forgets them all (each is recomputed from
# the indexed bindings in microseconds). An ACL change builds a new authorizer with none.
AUTHORIZER_MEMO_ENTRIES = 10_000

# Partitions a topic may have in all (topic creation and growth).
MAX_PARTITIONS_PER_TOPIC = 10_000

# Loops over partitions in one request give the event loop a turn after this many, so heartbeats
# and other requests go on (the work per partition is a lookup and a read from the page cache).
YIELD_EVERY_PARTITIONS = 100

# Reconciliation with metadata opens and deletes logs on a worker thread, and makes partitions
# leader or follower on the event loop, this many at a time: becoming leader fsyncs the partition's
# leader-epoch checkpoint (a few ms on a busy disk), so a chunk stays well under a heartbeat.
RECONCILE_CHUNK_PARTITIONS = 16

# Logs one worker-thread call opens or deletes in a reconciliation (a new log is a directory and
# an empty segment, no fsync; a deleted one a few unlinks): big enough that 10,000 partitions are
# a few hundred hops to a thread, small enough that one call holds a worker for milliseconds.
LOG_FILES_BATCH_PARTITIONS = 64

# The share of the time a reconciliation spends opening logs on its worker thread while it has more
# to open (it pauses after each batch), so that each node's loop, and the machine's cores, are left
# to the requests it serves. 10,000 partitions on three nodes of two cores: served in 13-31 s
# instead of 8, an acks=all produce to another topic meanwhile p50 162 -> 17-25 ms.
RECONCILE_LOG_OPEN_SHARE = 1 / 3

# AlterPartition calls (one partition's ISR change each) one broker has in flight to the
# controller at once; the other partitions' changes wait for a slot (their ISR stays as committed
# meanwhile, which only delays an expansion or a shrink). A broker returning to thousands of
# ISRs must not send thousands of calls at once.
ALTER_PARTITION_MAX_IN_FLIGHT = 32

# Preferred-leader elections one automatic leader-balance round commits (one Raft entry); the
# next round, an interval later, goes on. Each is a small PartitionChangeRecord, and each moves a
# partition's leadership, which its clients notice as a short NOT_LEADER_OR_FOLLOWER retry.
LEADER_BALANCE_MAX_ELECTIONS_PER_ROUND = 1_000

assert MAX_PARTITIONS_CREATED_PER_REQUEST <= MAX_PARTITIONS_PER_TOPIC, "one request may not exceed a whole topic"
assert YIELD_EVERY_PARTITIONS < MAX_PARTITIONS_CREATED_PER_REQUEST, "creating a topic must yield at least once"
assert RECONCILE_CHUNK_PARTITIONS <= YIELD_EVERY_PARTITIONS, "reconciliation does slower work per partition"
assert RECONCILE_CHUNK_PARTITIONS <= LOG_FILES_BATCH_PARTITIONS, "a thread's batch is made leader or follower in chunks"


# -- Raft transport and driver ---------------------------------------------------------------

# Messages queued for one peer whose stream is slow or down; past it the oldest are dropped.
# Raft resends what matters (appends are retried from the follower's progress, heartbeats recur),
# so a bound only costs a retransmission, while an unbounded queue to a dead peer grows forever.
RAFT_MAX_QUEUED_MESSAGES = 10_000
# Observers (broker-only nodes following the metadata log) a leader replicates to at once: each
# costs a progress entry, heartbeats and a sender stream. A FETCH from one more is ignored until an
# observer that went silent is dropped (after RAFT_OBSERVER_TIMEOUT_ELECTIONS election timeouts).
RAFT_MAX_OBSERVERS = 256
RAFT_OBSERVER_TIMEOUT_ELECTIONS = 4
# How long AddRaftVoter / RemoveRaftVoter wait for the configuration entry to commit (a few
# election timeouts: a change proposed just before a failover fails with NOT_CONTROLLER sooner).
RAFT_VOTER_CHANGE_TIMEOUT_S = 10.0

# Pause before reopening a broken stream to a peer: short, because a Raft peer that came back must
# hear its leader before its election timeout (500 ms) runs out.
RAFT_RECONNECT_BACKOFF_S = 0.05

# HTTP/2 keepalive of the Raft streams (raftlog/channels.py): a ping every this often notices a
# peer that vanished without a FIN. A Raft stream is client-streaming, so the server writes nothing
# on it between answers and counts each ping as one "without data": every server accepts a ping
# without data this often (half the clients' interval, room for timer jitter); gRPC's default (one
# per 5 minutes, GOAWAY too_many_pings on the third early one) broke every Raft stream about every
# 30 s, dropping its queued heartbeats.
GRPC_KEEPALIVE_TIME_MS = 10_000
GRPC_KEEPALIVE_TIMEOUT_MS = 5_000
GRPC_MIN_RECV_PING_INTERVAL_MS = GRPC_KEEPALIVE_TIME_MS // 2

# Entries in one APPEND message, and APPEND messages in flight to one follower (etcd raft's
# MaxSizePerMsg / MaxInflightMsgs): together they bound what a slow follower can have queued.
RAFT_MAX_ENTRIES_PER_MESSAGE = 4096
RAFT_MAX_INFLIGHT_MESSAGES = 256

assert GRPC_MIN_RECV_PING_INTERVAL_MS < GRPC_KEEPALIVE_TIME_MS, "servers must accept every keepalive ping"


# -- partition storage --------------------------------------------------------------------------

# How often a flush round also rewrites a log's recovery-point checkpoint (Kafka's
# log.flush.offset.checkpoint.interval.ms is 60 s). Each rewrite is a crash-safe file write (temp
# file, fsync, rename, directory fsync): doing it on every round made durable small appends about
# 60% more expensive. Rolls and clean closes always write it; recovery re-validates from it, so a
# lagging checkpoint costs only recovery time (at most this long of appends), never data.
RECOVERY_POINT_CHECKPOINT_INTERVAL_MS = 10_000


# Default of log.open.files.max (raftlog/log/file_cache.py): segment and index files a node keeps
# open at once; the least recently used are closed and reopened on their next use. Each segment
# has up to three files, and a node may host tens of thousands of partitions: without a bound an
# idle topic of 10,000 partitions held about 9,500 descriptors per node, near the usual ulimit of
# a service (and every descriptor costs kernel memory). 500 keeps the files of the partitions in
# use open (a reopen is one open(2), microseconds) with room below a 1,024 ulimit for sockets
# and RocksDB.
LOG_OPEN_FILES_MAX = 500


# Background flush rounds (checkpoints and sealed segments after a role change, a roll, a
# truncation; nobody waits for them) one node runs at once. Each is a few fsyncs on a worker
# thread; without a bound, thousands of partitions changing role together queued thousands of
# them ahead of the group commits that acks=all produce requests wait for.
BACKGROUND_FLUSH_ROUNDS_MAX = 2


# -- replication (follower fetches) -------------------------------------------------------------

# Default of replica.fetch.wait.max.ms (raftlog/config.py): a follower's long poll waits at most
# this long for new data.
REPLICA_FETCH_MAX_WAIT_MS = 500

# The long poll of a follower's idle fetch loop (the partitions without records for a while), at
# most a quarter of replica.lag.time.max.ms: each round names every idle partition, and at 10,000
# partitions those rounds were most of an idle node's CPU (replication/fetcher.py).
REPLICA_FETCH_IDLE_MAX_WAIT_MS = 2000

# Default of replica.fetch.max.bytes (raftlog/config.py): bytes one ReplicaFetch answer may carry;
# a follower far behind catches up in steps this size, well under MAX_MESSAGE_BYTES (config.py
# refuses more than half of it).
REPLICA_FETCH_MAX_BYTES = 16 * MIB

# A partition whose fetch failed waits this long before it is fetched again (the others go on).
REPLICA_FETCH_ERROR_BACKOFF_S = 0.1

# A leader leaves out of its answers to a follower the partitions whose answer that follower
# already has (nothing moved since an empty answer at the same position: the fetch session,
# replication/requests.py), for at most this long (or a quarter of replica.lag.time.max.ms if
# that is less); then it reads them again, which records the follower's fetch for the ISR.
# Those reads are much of what an idle partition costs (10,000 idle partitions on three nodes: with
# 1 s, acks=all to another topic p50/p99 66/866 ms, with 3 s and the scrubber passing logs with no
# sealed segment by, 15/494 ms); 3 s is still a tenth of the default replica.lag.time.max.ms.
FETCH_SESSION_REFRESH_S = 3.0

# Deadline of one ReplicaFetch call: the long poll plus ample room for a slow leader; a leader
# that does not answer in this time is taken for unreachable and asked again.
REPLICA_FETCH_TIMEOUT_S = 5.0


# -- the data plane: what a produce or fetch request may ask --------------------------------------

# The longest a consumer's Fetch may wait for data (max_wait_ms is capped to this), so a request
# never pins a handler for longer than a client's usual request timeout.
FETCH_MAX_WAIT_CAP_MS = 30_000

# Batches of one producer the leader remembers for de-duplication, and so the most a producer may
# have in flight per partition (Kafka's max.in.flight.requests.per.connection limit for idempotence).
PRODUCER_MAX_INFLIGHT_BATCHES = 5

# A batch that arrives ahead of its sequence waits this long for the earlier ones (gRPC calls of
# one producer are not ordered) before OUT_OF_ORDER_SEQUENCE_NUMBER.
SEQUENCE_WAIT_S = 0.5

# A metadata read that names a metadata offset this node has not applied yet waits at most this
# long for it (read-your-writes for the admin client).
METADATA_OFFSET_WAIT_S = 5.0

# The active controller's group commit: the records of decisions taken while an entry is open go
# into that one Raft entry (one MetadataBatch), up to this many bytes (well below
# MAX_RAFT_ENTRY_BYTES, so one large decision still fits an entry of its own), and a decision
# waits at most this long for its entry to commit before REQUEST_TIMED_OUT.
CONTROLLER_GROUP_COMMIT_MAX_BYTES = 256 * KIB
# Entries of the controller's proposed and not yet committed, beyond which decisions wait in the
# open entry for one of them to commit (so a burst of requests shares few entries). One: every
# Raft entry costs the three nodes a few gRPC messages each (append, answer, commit), and the
# nodes are CPU-bound under load, so fewer, larger entries beat a deeper pipeline. Measured with
# perf quorum's AlterConfigs load, 2 -> 1: 256 in flight 636-760 -> 896-1,085 ops/s (server CPU
# 1.9-2.3 -> 1.3-1.6 ms per op), 16 in flight 581 -> 793 ops/s with p99 57 -> 40 ms.
CONTROLLER_MAX_PENDING_ENTRIES = 1
CONTROLLER_COMMIT_TIMEOUT_S = 5.0

# A BenchmarkQuorum request forwarded to the active controller may run this long (a million
# writes at the quorum's rate on a slow disk).
BENCHMARK_FORWARD_TIMEOUT_S = 600.0


# -- broker to controller -------------------------------------------------------------------------

# A controller call never waits longer than this, even with a long session timeout: the channel
# retries on the next controller in time. (The rule itself, a quarter session, is the channel's.)
CONTROLLER_CALL_MAX_TIMEOUT_S = 3.0
# Pause between tries of one controller call (NOT_CONTROLLER, an unreachable controller).
CONTROLLER_CALL_RETRY_BACKOFF_S = 0.05
# Pause before a broker's next heartbeat or registration after one failed.
HEARTBEAT_RETRY_BACKOFF_S = 0.2


# -- clients --------------------------------------------------------------------------------------

# The broker answers within a Produce request's timeout_ms; past this margin the leader is taken
# for unreachable (paused, cut off) and the batch is retried, on a new leader if there is one.
PRODUCE_RESPONSE_MARGIN_S = 1.0
# Pauses before retrying a retriable error: the admin client, the consumer.
ADMIN_RETRY_BACKOFF_S = 0.1
CONSUMER_RETRY_BACKOFF_S = 0.05
# Deadline of one Metadata call of a client, and the least time between two refreshes (a burst of
# routing errors after a leader change costs one refresh, not one per partition).
CLIENT_METADATA_TIMEOUT_S = 5.0
CLIENT_MIN_METADATA_REFRESH_S = 0.05
# The CLI's console and admin commands first wait this long for a connection to any bootstrap
# server; when none connects they fail at once, saying so, instead of retrying for the whole
# call timeout (Kafka's socket.connection.setup.timeout.ms is 10 s; a local cluster connects in ms).
CLI_BOOTSTRAP_CONNECT_TIMEOUT_S = 3.0

assert 0 < RECONCILE_LOG_OPEN_SHARE <= 1, "a reconciliation opens logs some of the time"
assert REPLICA_FETCH_MAX_BYTES < MAX_MESSAGE_BYTES, "a fetch answer fits in one gRPC message"
assert REPLICA_FETCH_MAX_WAIT_MS / 1000.0 < REPLICA_FETCH_TIMEOUT_S, "the long poll ends before its call times out"
assert REPLICA_FETCH_IDLE_MAX_WAIT_MS / 1000.0 < REPLICA_FETCH_TIMEOUT_S, "the idle long poll too"
assert CONTROLLER_CALL_RETRY_BACKOFF_S < CONTROLLER_CALL_MAX_TIMEOUT_S, "a controller call can be tried twice"
assert CONTROLLER_GROUP_COMMIT_MAX_BYTES < MAX_RAFT_ENTRY_BYTES, "a full group-commit entry is a legal Raft entry"

# The Kafka protocol listener (raftlog/kafka/). One request frame is read whole into memory
# before it is decoded, so its size prefix is checked against this first: a larger frame (or a
# negative one) closes that connection. The same bound as a gRPC message: a Produce that gRPC
# would take is taken here too (Kafka's socket.request.max.bytes is 100 MiB).
KAFKA_MAX_FRAME_BYTES = MAX_MESSAGE_BYTES

# -- SASL logins (raftlog/authentication.py) ---------------------------------------------------
# A SCRAM exchange is two round trips; its state waits on the node between them. An exchange not
# finished in this time is forgotten, and at most this many wait at once (a client flooding
# first steps gets ILLEGAL_SASL_STATE instead of growing the node's memory).
SASL_EXCHANGE_TIMEOUT_S = 10.0
SASL_MAX_PENDING_EXCHANGES = 1024
# Session tokens verified recently, kept so that a call costs a dict lookup instead of two HMACs.
SASL_VERIFIED_TOKENS_MAX = 4096
# A client logs in again once this share of its token's lifetime has passed.
SASL_TOKEN_REFRESH_FRACTION = 0.8

assert KAFKA_MAX_FRAME_BYTES <= MAX_MESSAGE_BYTES, "a Kafka Produce frame carries what a gRPC Produce may"
# A client on an SSL Kafka listener that has not finished its TLS handshake by then is
# disconnected (one that connects and sends nothing must not hold a socket for ever).
KAFKA_TLS_HANDSHAKE_TIMEOUT_S = 10.0
# Produce requests of one Kafka connection served side by side (more wait in the socket): what an
# idempotent producer may have in flight (Kafka's max.in.flight.requests.per.connection <= 5), and
# a bound on the frames held in memory per connection.
KAFKA_MAX_IN_FLIGHT_PER_CONNECTION = 5
# Requests of one pipelined stream (ProduceStream, OffsetCommitStream) served side by side; the
# next waits unread in the stream (HTTP/2 flow control holds the client back). Above the
# producer's in-flight batches per partition times a few partitions per request, and a bound on
# the requests one call holds in memory.
PIPELINED_MAX_IN_FLIGHT_PER_STREAM = 32
