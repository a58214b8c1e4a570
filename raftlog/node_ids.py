"""Node ids and the one "no node" sentinel, shared by Raft, the metadata image, the API and the CLI.

Every id >= 0 is a real node: Kafka operators number nodes from 0, and `node.id = 0` is a
valid configuration. "No node" (no vote cast, no leader known, a partition without a leader,
no active controller) is NO_NODE = -1, as in Kafka, so it can never collide with a real id.
Pure: the Raft core imports this module, so it must not import grpc, asyncio or the disk.
"""

from __future__ import annotations

NO_NODE = -1


def node_or_none(node_id: int) -> int | None:
    """The id, or None for NO_NODE (for APIs where "unknown" is None)."""
    return None if node_id == NO_NODE else node_id
