"""SCRAM credential changes as a pure decision (Kafka's AlterUserScramCredentials on the controller).

All of a request's changes are one metadata entry: either every one is valid and they commit
together, or the request is refused as a whole and nothing changes.
"""

from __future__ import annotations

from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.scram import MECHANISMS, ScramCredential, ScramError, check_credential
from raftlog.v1 import admin_pb2, metadata_pb2

MAX_USER_NAME_CHARS = 255  # Kafka's entity names are bounded the same way


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_USER_NAME_CHARS or not name.isprintable():
        raise RaftlogError("UNACCEPTABLE_CREDENTIAL", f"user name {name!r} is empty, too long or not printable")


def _check_mechanism(mechanism: str) -> None:
    if mechanism not in MECHANISMS:
        raise RaftlogError(
            "UNSUPPORTED_SASL_MECHANISM", f"mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}"
        )


def alter_scram_credentials(
    image: MetadataImage,
    upsertions: list[admin_pb2.ScramCredentialUpsertion],
    deletions: list[admin_pb2.ScramCredentialDeletion],
) -> list[metadata_pb2.MetadataRecord]:
    if not upsertions and not deletions:
        raise RaftlogError("INVALID_REQUEST", "no credential to set or delete")
    seen: set[tuple[str, str]] = set()
    new_records: list[metadata_pb2.MetadataRecord] = []
    changes: list[admin_pb2.ScramCredentialUpsertion | admin_pb2.ScramCredentialDeletion] = [*upsertions, *deletions]
    for change in changes:
        _check_name(change.name)
        _check_mechanism(change.mechanism)
        key = (change.name, change.mechanism)
        if key in seen:
            raise RaftlogError("DUPLICATE_RESOURCE", f"{change.mechanism} of user {change.name!r} appears twice")
        seen.add(key)
    for upsertion in upsertions:
        credential = ScramCredential(
            upsertion.mechanism, upsertion.salt, upsertion.iterations, upsertion.stored_key, upsertion.server_key
        )
        try:
            check_credential(credential)
        except ScramError as exc:
            raise RaftlogError("UNACCEPTABLE_CREDENTIAL", f"user {upsertion.name!r}: {exc}") from None
        new_records.append(records.user_scram_credential(upsertion.name, credential))
    for deletion in deletions:
        if image.scram_credential(deletion.name, deletion.mechanism) is None:
            raise RaftlogError(
                "RESOURCE_NOT_FOUND", f"user {deletion.name!r} has no {deletion.mechanism} credential to delete"
            )
        new_records.append(records.remove_user_scram_credential(deletion.name, deletion.mechanism))
    return new_records
