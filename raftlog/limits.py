"""Limits on what one request may ask of a node, each with the reason beside it.

A node serves every request on one asyncio event loop; a request whose work grows without
bound (one Fetch naming 100,000 partitions, one CreateTopics of 10,000 partitions) starves
everything else on that loop, including the broker's heartbeats, and a broker that misses its
session is fenced: one request would take a node down. So work per request is capped here,
and long loops over partitions yield to the event loop every YIELD_EVERY_PARTITIONS.
"""

from __future__ import annotations

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
