"""The Kafka APIs that administer SCRAM credentials: DescribeUserScramCredentials (50) and
AlterUserScramCredentials (51). Translation only: both are served by the AdminServicer's own
methods (the gRPC ``raftlog users scram`` commands' ones), over the same credential records in the
metadata quorum, under the same policy (AdminServicer.authorize_credentials: Describe / Alter on the
cluster with ACLs on, as Kafka; a super user or an internal listener without).

Kafka answers AlterUserScramCredentials per user: a user whose changes are refused
(UNSUPPORTED_SASL_MECHANISM, UNACCEPTABLE_CREDENTIAL, DUPLICATE_RESOURCE, RESOURCE_NOT_FOUND) has
none of them applied, and the other users' changes go on. The controller's decision
(raftlog/controller/credentials.py) takes a request whole or not at all, so each user's changes are
first tried against this node's image with that same decision; the users that pass go to the
controller in one request, and should the controller refuse it (its image is newer than this
node's), each of them is sent alone, so every user gets its own answer.

A Kafka upsertion carries the salted password (Hi(password, salt, i)); the StoredKey and ServerKey
the records keep are derived from it here, and the salted password is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from raftlog.api.reads import await_applied
from raftlog.controller import credentials
from raftlog.errors import RaftlogError
from raftlog.kafka.errors import code_of, code_of_error
from raftlog.kafka.protocol import NO_THROTTLE, build, response_types
from raftlog.scram import MECHANISMS, credential_from_salted
from raftlog.v1 import admin_pb2

if TYPE_CHECKING:
    from raftlog.authorizer.authorizer import Caller
    from raftlog.kafka.handlers import KafkaBroker

# Kafka's ScramMechanism numbers (0 is UNKNOWN).
MECHANISM_NAMES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
MECHANISM_NUMBERS = {name: number for number, name in MECHANISM_NAMES.items()}
assert set(MECHANISM_NAMES.values()) == set(MECHANISMS), "every SCRAM mechanism has a Kafka number"


def _mechanism(number: int, user: str) -> str:
    name = MECHANISM_NAMES.get(number)
    if name is None:
        raise RaftlogError("UNSUPPORTED_SASL_MECHANISM", f"user {user!r}: unknown SCRAM mechanism {number}")
    return name


def _upsertion(kafka) -> admin_pb2.ScramCredentialUpsertion:
    """The record's parts from a Kafka upsertion (salt, salted password, iterations)."""
    name = _mechanism(kafka.mechanism, kafka.name)
    mech = MECHANISMS[name]
    if len(kafka.salted_password) != mech.digest_bytes:
        raise RaftlogError(
            "UNACCEPTABLE_CREDENTIAL",
            f"user {kafka.name!r}: a {name} salted password is {mech.digest_bytes} bytes, got {len(kafka.salted_password)}",
        )
    credential = credential_from_salted(mech, kafka.salted_password, kafka.salt, kafka.iterations)
    return admin_pb2.ScramCredentialUpsertion(
        name=kafka.name,
        mechanism=name,
        iterations=kafka.iterations,
        salt=kafka.salt,
        stored_key=credential.stored_key,
        server_key=credential.server_key,
    )


def _users_in_order(request) -> list[str]:
    return list(dict.fromkeys(change.name for change in (*request.deletions, *request.upsertions)))


# -- DescribeUserScramCredentials -------------------------------------------------------------------


async def describe_user_scram_credentials(broker: KafkaBroker, request, version: int, caller: Caller):
    """Mechanism and iterations per user (never salts or keys). Null or no users: every user with a
    credential. A user named twice: DUPLICATE_RESOURCE; a named user without any: RESOURCE_NOT_FOUND."""
    types = response_types(50, version)
    try:
        broker.admin.authorize_credentials(caller, "DescribeUserScramCredentials", "Cluster:kafka-cluster")
    except RaftlogError as exc:
        # Named users get the refusal each in their result; the request's own error code is set
        # only for a describe of every user, where there is no user to answer. (Kafka sets both,
        # but librdkafka 2.16's process crashes after reading a request-level error code of this
        # API; each user's error it reads as Kafka's clients do.)
        code, named = code_of_error(exc), list(dict.fromkeys(user.name for user in request.users or ()))
        return build(
            types.DescribeUserScramCredentialsResponse,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.none if named else code,
            error_message=None if named else exc.message,
            results=tuple(
                build(
                    types.DescribeUserScramCredentialsResult,
                    user=name,
                    error_code=code,
                    error_message=exc.message,
                    credential_infos=(),
                )
                for name in named
            ),
        )
    names = [user.name for user in request.users or ()]
    twice = {name for name in names if names.count(name) > 1}
    answer = await broker.admin.describe_user_scram_credentials(
        admin_pb2.DescribeUserScramCredentialsRequest(users=[name for name in names if name not in twice])
    )
    results = [
        build(
            types.DescribeUserScramCredentialsResult,
            user=result.user,
            error_code=code_of(result.error_reason),
            error_message=result.error_message or None,
            credential_infos=tuple(
                build(
                    types.CredentialInfo,
                    mechanism=MECHANISM_NUMBERS[info.mechanism],
                    iterations=info.iterations,
                )
                for info in result.credentials
            ),
        )
        for result in answer.results
    ]
    results += [
        build(
            types.DescribeUserScramCredentialsResult,
            user=name,
            error_code=ErrorCode.duplicate_resource,
            error_message=f"user {name!r} is named more than once",
            credential_infos=(),
        )
        for name in dict.fromkeys(name for name in names if name in twice)
    ]
    return build(
        types.DescribeUserScramCredentialsResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        results=tuple(results),
    )


# -- AlterUserScramCredentials ----------------------------------------------------------------------


def _user_changes(request, user: str) -> admin_pb2.AlterUserScramCredentialsRequest:
    """One user's changes as the AdminService's request; raises that user's error (RaftlogError)."""
    change = admin_pb2.AlterUserScramCredentialsRequest()
    for deletion in request.deletions:
        if deletion.name == user:
            change.deletions.append(
                admin_pb2.ScramCredentialDeletion(name=user, mechanism=_mechanism(deletion.mechanism, user))
            )
    for upsertion in request.upsertions:
        if upsertion.name == user:
            change.upsertions.append(_upsertion(upsertion))
    return change


async def alter_user_scram_credentials(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(51, version)
    users = _users_in_order(request)
    errors: dict[str, RaftlogError] = {}
    try:
        principal = broker.admin.authorize_credentials(
            caller, "AlterUserScramCredentials", ",".join(f"User:{u}" for u in users) or "-"
        )
    except RaftlogError as exc:  # Kafka: every user is answered the refusal
        errors = dict.fromkeys(users, exc)
        principal = None
    changes: dict[str, admin_pb2.AlterUserScramCredentialsRequest] = {}
    if principal is not None:
        for user in users:
            try:
                change = _user_changes(request, user)
                # The controller's own decision, on this node's image: the user's error, if any.
                credentials.alter_scram_credentials(broker.admin.image, list(change.upsertions), list(change.deletions))
                changes[user] = change
            except RaftlogError as exc:
                errors[user] = exc
        errors.update(await _commit(broker, principal, changes))
    results = tuple(
        build(
            types.AlterUserScramCredentialsResult,
            user=user,
            error_code=code_of_error(errors[user]) if user in errors else ErrorCode.none,
            error_message=errors[user].message if user in errors else None,
        )
        for user in users
    )
    return build(types.AlterUserScramCredentialsResponse, throttle_time=NO_THROTTLE, results=results)


async def _commit(
    broker: KafkaBroker, principal: str, changes: dict[str, admin_pb2.AlterUserScramCredentialsRequest]
) -> dict[str, RaftlogError]:
    """Commits the users' changes (together, else each alone) and waits until this node has
    applied them, so a describe sent to it next sees them; the error of each user that failed."""
    if not changes:
        return {}
    together = admin_pb2.AlterUserScramCredentialsRequest()
    for change in changes.values():
        together.upsertions.extend(change.upsertions)
        together.deletions.extend(change.deletions)
    errors: dict[str, RaftlogError] = {}
    committed: dict[str, int] = {}
    try:
        answer = await broker.admin.alter_user_scram_credentials(together, principal)
        committed = dict.fromkeys(changes, answer.offset)
    except RaftlogError as exc:
        if len(changes) == 1:
            return dict.fromkeys(changes, exc)
        for user, change in changes.items():
            try:
                committed[user] = (await broker.admin.alter_user_scram_credentials(change, principal)).offset
            except RaftlogError as user_exc:
                errors[user] = user_exc
    try:
        await await_applied(broker.driver, max(committed.values(), default=0))
    except RaftlogError as exc:  # committed, not yet visible here: the client retries (REQUEST_TIMED_OUT)
        errors.update(dict.fromkeys(committed, exc))
    return errors


HANDLERS = {
    50: (0, 0, describe_user_scram_credentials),
    51: (0, 0, alter_user_scram_credentials),
}
API_NAMES = {50: "DescribeUserScramCredentials", 51: "AlterUserScramCredentials"}
