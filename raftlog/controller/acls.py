"""The controller's ACL decisions (CreateAcls, DeleteAcls): bindings -> metadata records. Pure.

As in Kafka, creating a binding that exists already changes nothing, and a delete removes every
binding that one of its filters matches (none matching is not an error).
"""

from __future__ import annotations

import uuid

from raftlog.authorizer.acls import AclBinding, AclFilter
from raftlog.errors import RaftlogError
from raftlog.limits import MAX_ACL_BINDINGS_PER_REQUEST
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.v1 import metadata_pb2


def create_acls(
    image: MetadataImage, bindings: list[AclBinding]
) -> tuple[list[metadata_pb2.MetadataRecord], list[AclBinding]]:
    """(the records, the bindings they add: those of the request not in the image yet, once each)."""
    if not bindings:
        raise RaftlogError("INVALID_REQUEST", "no ACL bindings given")
    if len(bindings) > MAX_ACL_BINDINGS_PER_REQUEST:
        raise RaftlogError("INVALID_REQUEST", f"at most {MAX_ACL_BINDINGS_PER_REQUEST} bindings per request")
    for binding in bindings:
        binding.validate()
    existing = set(image.acls.values())
    created = [binding for binding in dict.fromkeys(bindings) if binding not in existing]  # once each, in order
    return [records.access_control_entry(uuid.uuid4().bytes, binding.to_pb()) for binding in created], created


def delete_acls(
    image: MetadataImage, filters: list[AclFilter]
) -> tuple[list[metadata_pb2.MetadataRecord], list[AclBinding]]:
    """(the records, the bindings they remove)."""
    if not filters:
        raise RaftlogError("INVALID_REQUEST", "no ACL filters given")
    if len(filters) > MAX_ACL_BINDINGS_PER_REQUEST:
        raise RaftlogError("INVALID_REQUEST", f"at most {MAX_ACL_BINDINGS_PER_REQUEST} filters per request")
    doomed = {acl_id: b for acl_id, b in image.acls.items() if any(f.matches(b) for f in filters)}
    return [records.remove_access_control_entry(acl_id) for acl_id in sorted(doomed)], list(doomed.values())
