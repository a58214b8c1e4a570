"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51) on the Kafka listener: per-user
answers of Kafka's semantics, over a real AdminServicer and the controller's real decision."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

import pytest
from kio.schema.alter_user_scram_credentials.v0.request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from kio.schema.describe_user_scram_credentials.v0.request import DescribeUserScramCredentialsRequest, UserName
from kio.schema.errors import ErrorCode

from raftlog.api.admin_service import AdminServicer
from raftlog.api.authorization import RequestAuthorizer
from raftlog.authorizer.acls import AclBinding, Operation, PatternType, Permission, ResourceType
from raftlog.authorizer.authorizer import AuthorizerSettings, Caller
from raftlog.config import load_config
from raftlog.controller import credentials
from raftlog.kafka import handlers
from raftlog.kafka.protocol import encode_response
from raftlog.metadata.image import MetadataImage
from raftlog.principals import serving_as
from raftlog.scram import SCRAM_SHA_256, SCRAM_SHA_512, ClientExchange, ServerExchange, salted_password
from tests.unit.test_config import base_env


@dataclasses.dataclass
class Status:
    node_id: int = 1
    leader_id: int | None = 1


class Driver:
    def status(self) -> Status:
        return Status()

    async def wait_applied(self, offset: int, timeout_s: float) -> bool:
        return True


class Controller:
    """The active controller's credential decision over an image; `ahead` changes the
    controller's image after the broker's dry run (its image is newer than the broker's)."""

    def __init__(self) -> None:
        self.image = MetadataImage()
        self.commits = 0
        self.ahead = None

    async def alter_scram_credentials(self, upsertions, deletions) -> int:
        if self.ahead is not None:
            self.ahead(self.image)
            self.ahead = None
        new_records = credentials.alter_scram_credentials(self.image, upsertions, deletions)
        self.commits += 1
        self.image.apply_records(self.image.offset + 1, new_records)
        return self.image.offset


ADMIN = Caller("User:admin", "127.0.0.1")
ALICE = Caller("User:alice", "127.0.0.1")


def kafka_broker(acls_on: bool, controller: Controller, bindings=()) -> handlers.KafkaBroker:
    config = load_config(None, environ=base_env(), overrides=["super.users=User:admin"])
    settings = AuthorizerSettings(enabled=acls_on, super_users=frozenset({"User:admin"}))

    class StateMachine:
        image = MetadataImage()

    StateMachine.image.acls = {secrets.token_bytes(8): b for b in bindings}
    authorizer = RequestAuthorizer(settings, StateMachine)
    # A client (not internal) listener: without ACLs only a super user may administer credentials.
    admin = AdminServicer("c", config, Driver(), controller, None, authorizer, None, "KAFKA")  # type: ignore[arg-type]
    return handlers.KafkaBroker("c", "KAFKA", Driver(), None, admin, None, None, None, authorizer)  # type: ignore[arg-type]


def run(broker, api_key: int, request, caller: Caller = ADMIN):
    handler = handlers.HANDLERS[api_key][2]

    async def call():
        with serving_as(caller.principal):
            return await handler(broker, request, 0, caller)

    answer = asyncio.run(call())
    assert len(encode_response(api_key, 0, 7, answer)) > 8
    return answer


def upsertion(user: str, password: str, mechanism: int = 1, iterations: int = 4096, salt: bytes | None = None):
    mech = SCRAM_SHA_256 if mechanism == 1 else SCRAM_SHA_512
    salt = secrets.token_bytes(32) if salt is None else salt
    salted = salted_password(mech, password, salt, iterations) if mechanism in (1, 2) else b"x" * 32
    return ScramCredentialUpsertion(
        name=user, mechanism=mechanism, iterations=iterations, salt=salt, salted_password=salted
    )


def alter(upsertions=(), deletions=()) -> AlterUserScramCredentialsRequest:
    return AlterUserScramCredentialsRequest(upsertions=tuple(upsertions), deletions=tuple(deletions))


def codes(answer) -> dict[str, ErrorCode]:
    return {result.user: result.error_code for result in answer.results}


def test_an_upserted_salted_password_logs_in_and_describe_shows_no_secret():
    controller = Controller()
    broker = kafka_broker(False, controller)
    answer = run(broker, 51, alter([upsertion("alice", "alice-secret", 2, 8192)]))
    assert codes(answer) == {"alice": ErrorCode.none}
    # The stored credential is the one a SCRAM login with the password checks.
    credential = controller.image.scram_credential("alice", "SCRAM-SHA-512")
    assert credential is not None and credential.iterations == 8192
    client, server = ClientExchange("SCRAM-SHA-512", "alice", "alice-secret"), ServerExchange("SCRAM-SHA-512")
    server.first(client.first())
    client.verify(server.final(client.final(server.respond(credential))))

    described = run(broker, 50, DescribeUserScramCredentialsRequest(users=None))
    assert described.error_code == ErrorCode.none
    [result] = described.results
    assert (result.user, result.error_code) == ("alice", ErrorCode.none)
    assert [(i.mechanism, i.iterations) for i in result.credential_infos] == [(2, 8192)]

    named = run(broker, 50, DescribeUserScramCredentialsRequest(users=(UserName(name="bob"), UserName(name="alice"))))
    assert codes(named) == {"bob": ErrorCode.resource_not_found, "alice": ErrorCode.none}
    twice = run(broker, 50, DescribeUserScramCredentialsRequest(users=(UserName(name="alice"),) * 2))
    assert codes(twice) == {"alice": ErrorCode.duplicate_resource}


def test_each_user_gets_its_own_error_and_the_others_are_applied():
    controller = Controller()
    broker = kafka_broker(False, controller)
    assert codes(run(broker, 51, alter([upsertion("carol", "c-pass")]))) == {"carol": ErrorCode.none}
    request = alter(
        upsertions=[
            upsertion("alice", "a-pass"),
            upsertion("bob", "b-pass", mechanism=0),  # UNKNOWN
            upsertion("dave", "d-pass", iterations=100),
            upsertion("erin", "e-pass", salt=b"short"),
            upsertion("frank", "f-pass"),
            upsertion("carol", "c-new"),
        ],
        deletions=[
            ScramCredentialDeletion(name="gina", mechanism=1),  # has none
            ScramCredentialDeletion(name="frank", mechanism=1),  # the same credential as its upsertion
            ScramCredentialDeletion(name="carol", mechanism=2),  # carol has no SCRAM-SHA-512
        ],
    )
    commits = controller.commits
    answer = run(broker, 51, request)
    assert codes(answer) == {
        "gina": ErrorCode.resource_not_found,
        "frank": ErrorCode.duplicate_resource,
        "carol": ErrorCode.resource_not_found,
        "alice": ErrorCode.none,
        "bob": ErrorCode.unsupported_sasl_mechanism,
        "dave": ErrorCode.unacceptable_credential,
        "erin": ErrorCode.unacceptable_credential,
    }
    assert all(r.error_message for r in answer.results if r.error_code != ErrorCode.none)
    assert controller.commits == commits + 1  # the accepted users' changes in one entry
    assert set(controller.image.scram_credentials) == {("alice", "SCRAM-SHA-256"), ("carol", "SCRAM-SHA-256")}
    # carol's failed deletion kept her upsertion out too (a user's changes apply together or not at all).
    carol = controller.image.scram_credential("carol", "SCRAM-SHA-256")
    assert carol is not None
    client, server = ClientExchange("SCRAM-SHA-256", "carol", "c-pass"), ServerExchange("SCRAM-SHA-256")
    server.first(client.first())
    client.verify(server.final(client.final(server.respond(carol))))


def test_a_controller_refusal_the_broker_could_not_foresee_fails_only_that_user():
    controller = Controller()
    broker = kafka_broker(False, controller)
    run(broker, 51, alter([upsertion("alice", "a"), upsertion("bob", "b")]))
    # Between the broker's dry run and the controller's decision bob's credential is deleted.
    controller.ahead = lambda image: image.apply_records(
        image.offset + 1, credentials.alter_scram_credentials(image, [], [_pb_deletion("bob")])
    )
    answer = run(
        broker,
        51,
        alter(
            deletions=[
                ScramCredentialDeletion(name="alice", mechanism=1),
                ScramCredentialDeletion(name="bob", mechanism=1),
            ]
        ),
    )
    assert codes(answer) == {"alice": ErrorCode.none, "bob": ErrorCode.resource_not_found}
    assert controller.image.scram_credentials == {}


def _pb_deletion(user: str):
    from raftlog.v1 import admin_pb2

    return admin_pb2.ScramCredentialDeletion(name=user, mechanism="SCRAM-SHA-256")


def test_without_acls_only_a_super_user_on_a_client_listener():
    controller = Controller()
    broker = kafka_broker(False, controller)
    answer = run(broker, 51, alter([upsertion("alice", "a"), upsertion("bob", "b")]), caller=ALICE)
    assert codes(answer) == {
        "alice": ErrorCode.cluster_authorization_failed,
        "bob": ErrorCode.cluster_authorization_failed,
    }
    assert controller.image.scram_credentials == {}
    described = run(broker, 50, DescribeUserScramCredentialsRequest(users=None), caller=ALICE)
    assert (described.error_code, described.results) == (ErrorCode.cluster_authorization_failed, ())
    assert described.error_message
    named = run(broker, 50, DescribeUserScramCredentialsRequest(users=(UserName(name="bob"),)), caller=ALICE)
    assert codes(named) == {"bob": ErrorCode.cluster_authorization_failed} and named.results[0].error_message


@pytest.mark.parametrize(
    ("operation", "describe", "alter_allowed"), [(Operation.DESCRIBE, True, False), (Operation.ALTER, True, True)]
)
def test_with_acls_describe_and_alter_on_the_cluster(operation, describe, alter_allowed):
    binding = AclBinding(
        ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL, "User:alice", "*", operation, Permission.ALLOW
    )
    controller = Controller()
    broker = kafka_broker(True, controller, [binding])
    described = run(broker, 50, DescribeUserScramCredentialsRequest(users=None), caller=ALICE)
    assert (described.error_code == ErrorCode.none) is describe
    answer = run(broker, 51, alter([upsertion("bob", "b")]), caller=ALICE)
    expected = ErrorCode.none if alter_allowed else ErrorCode.cluster_authorization_failed
    assert codes(answer) == {"bob": expected}


def test_api_versions_advertises_both():
    assert handlers.API_VERSIONS[50] == (0, 0) and handlers.API_VERSIONS[51] == (0, 0)
