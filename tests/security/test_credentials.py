"""SCRAM credentials as metadata (decisions, image, snapshot) and the node's Authenticator:
logins, session tokens, and the audit line and metric of every refusal."""

from __future__ import annotations

import logging

import pytest

from raftlog import scram
from raftlog.authentication import Authenticator
from raftlog.controller.credentials import alter_scram_credentials
from raftlog.errors import Errors, RaftlogError
from raftlog.metadata.image import MetadataImage
from raftlog.metrics.registry import NodeMetrics
from raftlog.v1 import admin_pb2

PASSWORD = "alice-secret"


def upsertion(name: str, mechanism: str = "SCRAM-SHA-256", password: str = PASSWORD, iterations: int = 4096):
    c = scram.make_credential(mechanism, password, iterations)
    return admin_pb2.ScramCredentialUpsertion(
        name=name,
        mechanism=mechanism,
        iterations=iterations,
        salt=c.salt,
        stored_key=c.stored_key,
        server_key=c.server_key,
    )


def image_with(*upsertions) -> MetadataImage:
    image = MetadataImage()
    image.apply_records(1, alter_scram_credentials(image, list(upsertions), []))
    return image


def test_credentials_apply_and_survive_a_snapshot():
    image = image_with(upsertion("alice"), upsertion("alice", "SCRAM-SHA-512", iterations=8192))
    restored = MetadataImage.from_snapshot(image.to_snapshot())
    assert restored.scram_credentials == image.scram_credentials
    assert restored.scram_credential("alice", "SCRAM-SHA-512").iterations == 8192
    assert PASSWORD.encode() not in image.to_snapshot()
    deletion = admin_pb2.ScramCredentialDeletion(name="alice", mechanism="SCRAM-SHA-256")
    copy = image.copy()
    copy.apply_records(2, alter_scram_credentials(copy, [], [deletion]))
    assert copy.scram_credential("alice", "SCRAM-SHA-256") is None
    assert image.scram_credential("alice", "SCRAM-SHA-256") is not None  # the copy is independent


@pytest.mark.parametrize(
    ("upsertions", "deletions", "error"),
    [
        ([], [admin_pb2.ScramCredentialDeletion(name="nobody", mechanism="SCRAM-SHA-256")], Errors.RESOURCE_NOT_FOUND),
        ([upsertion("a"), upsertion("a")], [], Errors.DUPLICATE_RESOURCE),
        (
            [admin_pb2.ScramCredentialUpsertion(name="a", mechanism="SCRAM-SHA-1")],
            [],
            Errors.UNSUPPORTED_SASL_MECHANISM,
        ),
        (
            [admin_pb2.ScramCredentialUpsertion(name="a", mechanism="SCRAM-SHA-256", iterations=1000)],
            [],
            Errors.UNACCEPTABLE_CREDENTIAL,
        ),
        ([upsertion("")], [], Errors.UNACCEPTABLE_CREDENTIAL),
        ([], [], Errors.INVALID_REQUEST),
    ],
)
def test_bad_credential_changes_are_refused_as_a_whole(upsertions, deletions, error):
    with pytest.raises(RaftlogError) as info:
        alter_scram_credentials(MetadataImage(), upsertions, deletions)
    assert info.value.error is error


def login(authenticator: Authenticator, user: str, password: str):
    client = scram.ClientExchange("SCRAM-SHA-256", user, password)
    exchange_id, server_first = authenticator.grpc_first("SCRAM-SHA-256", client.first(), "SASL")
    result = authenticator.grpc_final("SCRAM-SHA-256", exchange_id, client.final(server_first), "SASL")
    client.verify(result.server_final)
    return result


def test_authenticator_logins_tokens_and_audit(caplog):
    image = image_with(upsertion("alice"))
    metrics = NodeMetrics()
    now_ms = [1_000_000]
    authenticator = Authenticator(lambda: image, ("SCRAM-SHA-256",), 60_000, metrics, wall_ms=lambda: now_ms[0])
    result = login(authenticator, "alice", PASSWORD)
    assert result.principal == "User:alice" and result.lifetime_ms == 60_000
    assert authenticator.token_principal(result.token, "SASL") == "User:alice"
    caplog.set_level(logging.INFO, logger="raftlog.audit")
    for user, password in (("alice", "wrong"), ("mallory", PASSWORD)):  # unknown users fail the same way
        with pytest.raises(RaftlogError) as info:
            login(authenticator, user, password)
        assert info.value.error is Errors.SASL_AUTHENTICATION_FAILED and "invalid credentials" in info.value.message
    with pytest.raises(RaftlogError, match="needs SASL authentication"):
        authenticator.token_principal(None, "SASL")
    now_ms[0] += 60_000
    with pytest.raises(RaftlogError, match="expired"):
        authenticator.token_principal(result.token, "SASL")
    refusals = [r.getMessage() for r in caplog.records if "audit: refused" in r.getMessage()]
    assert len(refusals) == 4
    assert "principal=User:alice operation=Authenticate resource=listener:SASL" in refusals[0]
    assert "principal=User:mallory" in refusals[1] and "principal=User:ANONYMOUS" in refusals[2]
    assert all(PASSWORD not in line and "wrong" not in line.split("reason")[0] for line in refusals)
    failures = metrics.registry.get_sample_value(
        "raftlog_authentication_failures_total", {"listener": "SASL", "mechanism": "SCRAM-SHA-256"}
    )
    assert failures == 3.0


def test_a_second_step_without_a_first_is_illegal():
    authenticator = Authenticator(MetadataImage, ("SCRAM-SHA-256",), 60_000)
    with pytest.raises(RaftlogError) as info:
        authenticator.grpc_final("SCRAM-SHA-256", "made-up", b"c=biws,r=x,p=eA==", "SASL")
    assert info.value.error is Errors.ILLEGAL_SASL_STATE
    with pytest.raises(RaftlogError) as info:
        authenticator.grpc_first("SCRAM-SHA-512", b"n,,n=a,r=b", "SASL")
    assert info.value.error is Errors.UNSUPPORTED_SASL_MECHANISM


def test_describe_answers_cannot_carry_key_material():
    """DescribeUserScramCredentials' answer has no bytes field anywhere: no salt, key or hash can
    be put in it, whatever the servicer does."""
    from google.protobuf.descriptor import FieldDescriptor

    def bytes_fields(descriptor, seen=()):
        for field in descriptor.fields:
            if field.type == FieldDescriptor.TYPE_BYTES:
                yield f"{descriptor.name}.{field.name}"
            elif field.message_type is not None and field.message_type not in seen:
                yield from bytes_fields(field.message_type, (*seen, descriptor))

    assert list(bytes_fields(admin_pb2.DescribeUserScramCredentialsResponse.DESCRIPTOR)) == []
    assert "ScramCredentialUpsertion.salt" in list(bytes_fields(admin_pb2.AlterUserScramCredentialsRequest.DESCRIPTOR))
