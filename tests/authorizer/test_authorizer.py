"""The pure authorizer and ACL model: Kafka's rules as tables (deny wins, implied operations,
wildcards, prefixes, super users, allow.everyone.if.no.acl.found, filters)."""

from __future__ import annotations

import pytest

from raftlog.authorizer.acls import AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType
from raftlog.authorizer.authorizer import Authorizer, AuthorizerSettings, Caller
from raftlog.authorizer.required import REQUIRED, STREAMED_AS
from raftlog.cluster.secure import client_bindings
from raftlog.controller import acls as acl_decisions
from raftlog.errors import RaftlogError
from raftlog.metadata.image import MetadataImage
from raftlog.metadata.records import decode_batch, encode_batch
from raftlog.principals import parse_super_users

T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = Permission.ALLOW, Permission.DENY
Op = Operation
ON = AuthorizerSettings(enabled=True, super_users=frozenset({"User:admin"}))
ALICE = Caller("User:alice", "10.0.0.1")


def acl(name, op, permission=ALLOW, kind=T, pattern=LIT, principal="User:alice", host="*"):
    return AclBinding(kind, name, pattern, principal, host, op, permission)


def allowed(bindings, op, name, kind=T, caller=ALICE, settings=ON) -> bool:
    return Authorizer(settings, bindings).authorize(caller, op, kind, name).allowed


@pytest.mark.parametrize(
    "bindings, op, name, expected",
    [
        ([acl("orders", Op.READ)], Op.READ, "orders", True),
        ([acl("orders", Op.READ)], Op.WRITE, "orders", False),  # read only: no produce
        ([acl("orders", Op.READ)], Op.DESCRIBE, "orders", True),  # implied by Read
        ([acl("orders", Op.WRITE)], Op.DESCRIBE, "orders", True),
        ([acl("orders", Op.DELETE)], Op.DESCRIBE, "orders", True),
        ([acl("orders", Op.ALTER)], Op.DESCRIBE, "orders", True),
        ([acl("orders", Op.ALTER_CONFIGS)], Op.DESCRIBE_CONFIGS, "orders", True),
        ([acl("orders", Op.DESCRIBE)], Op.READ, "orders", False),  # implication goes one way
        ([acl("orders", Op.ALL)], Op.WRITE, "orders", True),
        ([acl("orders", Op.READ), acl("orders", Op.READ, DENY)], Op.READ, "orders", False),  # deny wins
        ([acl("orders", Op.ALL), acl("orders", Op.WRITE, DENY)], Op.WRITE, "orders", False),
        ([acl("orders", Op.ALL), acl("orders", Op.WRITE, DENY)], Op.READ, "orders", True),
        ([acl("orders", Op.READ), acl("*", Op.ALL, DENY)], Op.READ, "orders", False),  # wildcard deny
        ([acl("*", Op.READ)], Op.READ, "anything", True),
        ([acl("ord", Op.READ, pattern=PRE)], Op.READ, "orders", True),  # prefixed
        ([acl("ord", Op.READ, pattern=PRE)], Op.READ, "or", False),
        ([acl("ord", Op.READ)], Op.READ, "orders", False),  # literal is not a prefix
        ([acl("orders", Op.READ, DENY, pattern=PRE), acl("orders-eu", Op.READ)], Op.READ, "orders-eu", False),
        ([acl("orders", Op.READ, principal="User:*")], Op.READ, "orders", True),
        ([acl("orders", Op.READ, principal="User:bob")], Op.READ, "orders", False),
        ([acl("orders", Op.READ, host="10.0.0.2")], Op.READ, "orders", False),
        ([acl("orders", Op.READ, host="10.0.0.1")], Op.READ, "orders", True),
        ([], Op.READ, "orders", False),  # authorization on, no binding: denied
        ([acl("orders", Op.READ, kind=G)], Op.READ, "orders", False),  # a group binding is not a topic's
    ],
)
def test_kafka_rules(bindings, op, name, expected):
    assert allowed(bindings, op, name) is expected


def test_super_users_nodes_and_the_no_acl_default():
    deny_all = [acl("*", Op.ALL, DENY, principal="User:*")]
    assert allowed(deny_all, Op.WRITE, "orders", caller=Caller("User:admin", "h"))
    assert parse_super_users(" User:admin ;User:ops;") == frozenset({"User:admin", "User:ops"})
    node = Caller("User:node-2", "h", is_node=True)
    assert allowed([], Op.CLUSTER_ACTION, "kafka-cluster", kind=C, caller=node)
    assert not allowed([], Op.ALTER, "kafka-cluster", kind=C, caller=node)
    assert not allowed([], Op.CLUSTER_ACTION, "kafka-cluster", kind=C)  # a user is not a node
    everyone = AuthorizerSettings(enabled=True, allow_everyone_if_no_acl_found=True)
    assert allowed([], Op.WRITE, "orders", settings=everyone)
    # a binding on the resource for someone else: no longer "no ACL found"
    assert not allowed([acl("orders", Op.READ, principal="User:bob")], Op.WRITE, "orders", settings=everyone)
    assert allowed([], Op.WRITE, "orders", settings=AuthorizerSettings())  # off: everything


def test_write_on_any_topic_is_enough_for_idempotence():
    authorizer = Authorizer(ON, [acl("logs-", Op.WRITE, pattern=PRE)])
    assert authorizer.authorize_any(ALICE, Op.WRITE, T).allowed
    denied = Authorizer(ON, [acl("logs-", Op.WRITE, pattern=PRE), acl("logs-", Op.WRITE, DENY, pattern=PRE)])
    assert not denied.authorize_any(ALICE, Op.WRITE, T).allowed
    assert not Authorizer(ON, [acl("logs", Op.READ)]).authorize_any(ALICE, Op.WRITE, T).allowed


@pytest.mark.parametrize(
    "binding",
    [
        acl("kafka-cluster", Op.READ, kind=C),  # Read is not a cluster operation
        acl("other", Op.ALTER, kind=C),  # the cluster is kafka-cluster
        acl("*", Op.READ, pattern=PRE),
        acl("orders", Op.READ, principal="alice"),
        acl("", Op.READ),
        acl("orders", Op.ANY),
        acl("g", Op.WRITE, kind=G),
    ],
)
def test_bindings_that_cannot_be_stored(binding):
    with pytest.raises(RaftlogError, match="INVALID_REQUEST"):
        binding.validate()


def test_filters_match_as_kafka_acls_list_and_remove():
    literal, prefixed, wildcard = acl("orders", Op.READ), acl("ord", Op.WRITE, pattern=PRE), acl("*", Op.DESCRIBE)
    group = acl("g1", Op.READ, kind=G)
    everything = [literal, prefixed, wildcard, group]

    def matching(f):
        return [b for b in everything if f.matches(b)]

    assert matching(AclFilter()) == everything
    assert matching(AclFilter(T, "orders")) == [literal]  # pattern ANY: exact names only
    assert matching(AclFilter(T, "orders", PatternType.MATCH)) == [literal, prefixed, wildcard]
    assert matching(AclFilter(T, "ord", PRE)) == [prefixed]
    assert matching(AclFilter(G)) == [group]
    assert matching(AclFilter(operation=Op.WRITE)) == [prefixed]
    pb = AclFilter(T, "orders", PatternType.MATCH, principal="User:alice").to_pb()
    assert AclFilter.from_pb(pb) == AclFilter(T, "orders", PatternType.MATCH, principal="User:alice")


def test_names_parse_as_kafka_spells_them():
    assert Op.parse("ClusterAction") is Op.CLUSTER_ACTION
    assert Op.parse("idempotent-write") is Op.IDEMPOTENT_WRITE
    assert Op.CLUSTER_ACTION.kafka_name == "ClusterAction"
    with pytest.raises(RaftlogError, match="not one of"):
        Op.parse("Fly")


def test_acl_records_apply_to_the_image_and_survive_a_snapshot():
    image = MetadataImage()
    bindings = [acl("orders", Op.READ), acl("orders", Op.READ), acl("g", Op.READ, kind=G)]
    records, created = acl_decisions.create_acls(image, bindings)
    assert len(records) == 2  # the duplicate is stored once
    assert created == [acl("orders", Op.READ), acl("g", Op.READ, kind=G)]
    image.apply_batch(1, decode_batch(encode_batch(*records)))
    assert sorted(map(str, image.acls.values())) == sorted({str(b) for b in bindings})
    # exists already: no change, and the answer says only the new one was created
    assert acl_decisions.create_acls(image, [acl("orders", Op.READ)]) == ([], [])
    again, created = acl_decisions.create_acls(image, [acl("orders", Op.READ), acl("orders", Op.WRITE)])
    assert len(again) == 1 and created == [acl("orders", Op.WRITE)]
    before = image.acls
    removals, removed = acl_decisions.delete_acls(image, [AclFilter(G)])
    assert removed == [acl("g", Op.READ, kind=G)]
    image.apply_records(2, removals)
    assert list(image.acls.values()) == [acl("orders", Op.READ)]
    assert len(before) == 2, "an ACL change replaces the dict (authorizers built from the old one stay valid)"
    restored = MetadataImage.from_snapshot(image.to_snapshot())
    assert restored.acls == image.acls


def test_every_requirement_names_a_resource_type_with_that_operation():
    from raftlog.authorizer.acls import SUPPORTED_OPERATIONS

    for api, requirements in REQUIRED.items():
        for requirement in requirements:
            assert requirement.operation in SUPPORTED_OPERATIONS[requirement.resource_type], api


def test_every_client_rpc_has_a_requirement():
    """A new client RPC without an entry would be served to anyone once ACLs are on (the voter
    changes were, until this test): each needs a row in REQUIRED or a reason here."""
    from raftlog.v1 import acls_pb2, admin_pb2, broker_pb2, group_pb2, sasl_pb2

    checked_by_resource = {"DescribeConfigs", "IncrementalAlterConfigs"}  # -> Describe/Alter{Topic,Broker}Configs
    before_authentication = {"SaslAuthenticate"}  # the login itself
    for module in (admin_pb2, broker_pb2, group_pb2, acls_pb2, sasl_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.name in checked_by_resource | before_authentication:
                    continue
                name = STREAMED_AS.get(method.name, method.name)
                assert name in REQUIRED, f"{service.name}.{method.name} has no entry in REQUIRED"


def test_client_bindings_grant_a_producer_and_consumer_of_one_topic_nothing_more():
    """What the secure chaos runs and replication tests grant their client (raftlog/cluster/secure.py)."""
    bindings = client_bindings("User:alice", "ledger", "ledger-group", idempotent=True)
    may = [
        (Op.WRITE, T, "ledger"),  # Produce
        (Op.READ, T, "ledger"),  # Fetch, OffsetCommit
        (Op.DESCRIBE, T, "ledger"),  # Metadata, ListOffsets, OffsetFetch: implied
        (Op.READ, G, "ledger-group"),  # ConsumerGroupHeartbeat, OffsetCommit
        (Op.DESCRIBE, G, "ledger-group"),  # FindCoordinator, OffsetFetch: implied
        (Op.IDEMPOTENT_WRITE, C, "kafka-cluster"),  # InitProducerId
    ]
    may_not = [
        (Op.WRITE, T, "other"),
        (Op.READ, T, "other"),
        (Op.DESCRIBE, T, "other"),
        (Op.CREATE, T, "ledger"),
        (Op.DELETE, T, "ledger"),
        (Op.ALTER_CONFIGS, T, "ledger"),
        (Op.READ, G, "other-group"),
        (Op.DELETE, G, "ledger-group"),
        (Op.ALTER, C, "kafka-cluster"),
        (Op.CLUSTER_ACTION, C, "kafka-cluster"),
    ]
    assert [allowed(bindings, op, name, kind) for op, kind, name in may] == [True] * len(may)
    assert [allowed(bindings, op, name, kind) for op, kind, name in may_not] == [False] * len(may_not)
    assert allowed(bindings, Op.READ, "ledger", caller=Caller("User:bob", "10.0.0.1")) is False
    assert len(client_bindings("User:alice", "ledger")) == 2  # Write and Read: no group, not idempotent
