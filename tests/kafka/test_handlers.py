"""Kafka handlers' translations that a real cluster shows only under faults, with a stub coordinator."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode
from kio.schema.find_coordinator.v2.request import FindCoordinatorRequest as FindCoordinatorV2
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest as FindCoordinatorV4

from raftlog.api.authorization import RequestAuthorizer
from raftlog.authorizer.authorizer import AuthorizerSettings, Caller
from raftlog.errors import RaftlogError
from raftlog.kafka.handlers import KafkaBroker, find_coordinator


class FailingCoordinator:
    def __init__(self, reason: str):
        self.reason = reason

    async def find_coordinator(self, group_id: str, listener: str | None = None):
        raise RaftlogError(self.reason, "stub")


def broker_with(reason: str) -> KafkaBroker:
    off = RequestAuthorizer(AuthorizerSettings(), None)
    return KafkaBroker("c", "KAFKA", None, None, None, None, FailingCoordinator(reason), None, off)  # type: ignore[arg-type]


ANONYMOUS = Caller("User:ANONYMOUS", "127.0.0.1")


def test_a_passing_failure_to_find_the_coordinator_is_coordinator_not_available():
    # librdkafka hands NOT_CONTROLLER from FindCoordinator to the application as a consume error;
    # COORDINATOR_NOT_AVAILABLE it retries quietly.
    answer = asyncio.run(
        find_coordinator(
            broker_with("NOT_CONTROLLER"), FindCoordinatorV4(key_type=0, coordinator_keys=("g",)), 4, ANONYMOUS
        )
    )
    assert [c.error_code for c in answer.coordinators] == [ErrorCode.coordinator_not_available]
    answer = asyncio.run(
        find_coordinator(broker_with("REQUEST_TIMED_OUT"), FindCoordinatorV2(key="g", key_type=0), 2, ANONYMOUS)
    )
    assert answer.error_code == ErrorCode.coordinator_not_available


def test_a_bad_group_id_keeps_its_own_code():
    answer = asyncio.run(
        find_coordinator(broker_with("INVALID_GROUP_ID"), FindCoordinatorV2(key="", key_type=0), 2, ANONYMOUS)
    )
    assert answer.error_code == ErrorCode.invalid_group_id


# -- the group APIs: every served version builds and encodes its answer -----------------------------


class StubGroups:
    """A coordinator answering every group call with something plausible (no group logic)."""

    async def find_coordinator(self, group_id: str, listener: str | None = None):
        from raftlog.v1 import group_pb2

        return group_pb2.FindCoordinatorResponse(node_id=2, host="h", port=9, partition=0)

    async def join_classic(self, group_id, request):
        from raftlog.groups.classic import JoinAnswer

        return JoinAnswer("", "m-1", 3, "consumer", "range", "m-1", (("m-1", "i-1", b"meta"),))

    async def sync_classic(
        self, group_id, member_id, instance_id, generation, protocol_type, protocol_name, assignments
    ):
        from raftlog.groups.classic import SyncAnswer

        return SyncAnswer("", "consumer", "range", b"assignment")

    async def heartbeat_classic(self, group_id, member_id, instance_id, generation):
        raise RaftlogError("REBALANCE_IN_PROGRESS", "stub")

    async def leave_classic(self, group_id, members):
        from raftlog.groups.classic import LeaveAnswer

        return [LeaveAnswer(m, i, "UNKNOWN_MEMBER_ID") for m, i in members]

    async def classic_group(self, group_id):
        return None, 1

    async def list_groups(self):
        from raftlog.v1 import group_pb2

        return group_pb2.ListGroupsResponse(
            groups=[group_pb2.ListedGroup(group_id="g", group_type="classic", state="Stable")]
        )

    async def delete_group(self, group_id):
        raise RaftlogError("NON_EMPTY_GROUP", "stub")

    async def delete_offsets(self, request):
        from raftlog.v1 import group_pb2

        return group_pb2.OffsetDeleteResponse(results=[])

    async def heartbeat(self, request, client_host, describable=None):
        raise RaftlogError("UNKNOWN_MEMBER_ID", "stub")


class StubImage:
    topic_ids: dict[str, bytes] = {}


class StubReplicas:
    image = StubImage()


def test_every_served_version_of_the_group_apis_answers_with_an_encodable_response():
    from kio.index import load_request_schema

    from raftlog.api.group_service import GroupServicer
    from raftlog.kafka import group_handlers, handlers
    from raftlog.kafka.errors import code_of_error
    from raftlog.kafka.protocol import _zero_entity, encode_response, error_response

    off = RequestAuthorizer(AuthorizerSettings(), None)
    groups = StubGroups()
    servicer = GroupServicer(groups, off)  # type: ignore[arg-type]
    broker = KafkaBroker("c", "KAFKA", None, None, None, StubReplicas(), groups, servicer, off)  # type: ignore[arg-type]
    served = {**group_handlers.HANDLERS, 10: handlers.HANDLERS[10]}
    for api_key, (low, high, handler) in served.items():
        for version in range(low, high + 1):
            request = _zero_entity(load_request_schema(api_key, version), ErrorCode.none)
            if api_key == 10 and version >= 4:
                request = FindCoordinatorV4(key_type=0, coordinator_keys=("g",))
            try:
                answer = asyncio.run(handler(broker, request, version, ANONYMOUS))
            except RaftlogError as exc:  # the server answers it with the error code (server.py)
                assert api_key == 12, (api_key, version, exc)
                answer = error_response(api_key, version, code_of_error(exc))
            data = encode_response(api_key, version, 7, answer)
            assert len(data) > 8, (api_key, version)
            if api_key == 11:
                assert answer.member_id == "m-1" and answer.generation_id == 3
                assert [m.member_id for m in answer.members] == ["m-1"]
            if api_key == 13:  # LeaveGroup: a member's error is the response's before v3
                codes = [m.error_code for m in answer.members] if version >= 3 else [answer.error_code]
                assert codes == ([ErrorCode.unknown_member_id] if version < 3 else [])
            if api_key == 68:
                assert answer.error_code == ErrorCode.unknown_member_id and answer.error_message == "stub"
            if api_key == 10 and version >= 4:
                assert [(c.key, c.node_id, c.error_code) for c in answer.coordinators] == [("g", 2, ErrorCode.none)]


def test_sasl_handshake_v0_is_advertised_for_librdkafka_but_refused():
    """librdkafka 2.0 counts a broker as SASL-capable only when SaslHandshake v0 is in range; a v0
    handshake (raw tokens would follow) is answered UNSUPPORTED_VERSION and closes the connection."""
    from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest as HandshakeV0
    from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest as HandshakeV1

    from raftlog.authentication import Authenticator
    from raftlog.kafka.handlers import API_VERSIONS
    from raftlog.kafka.sasl import ConnectionSasl
    from raftlog.metadata.image import MetadataImage

    assert API_VERSIONS[17] == (0, 1)
    authenticator = Authenticator(MetadataImage, ("SCRAM-SHA-512",), 60_000)
    old = ConnectionSasl(authenticator, "KAFKA", "SASL_SSL")
    answer = asyncio.run(old.handshake(HandshakeV0(mechanism="SCRAM-SHA-512"), 0))
    assert answer.error_code == ErrorCode.unsupported_version and old.close_after_answer
    new = ConnectionSasl(authenticator, "KAFKA", "SASL_SSL")
    answer = asyncio.run(new.handshake(HandshakeV1(mechanism="SCRAM-SHA-512"), 1))
    assert answer.error_code == ErrorCode.none and not new.close_after_answer


def test_a_kafka_regex_heartbeat_hands_the_coordinator_the_callers_describe_permission():
    """ConsumerGroupHeartbeat v1 with a regex: the coordinator is given which topics the caller may
    Describe (its regex matches only those), the ACLs of the moment it asks."""
    import secrets

    from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest

    from raftlog.api.group_service import GroupServicer
    from raftlog.authorizer.acls import AclBinding, Operation, PatternType, Permission, ResourceType
    from raftlog.kafka.group_handlers import consumer_group_heartbeat
    from raftlog.metadata.image import MetadataImage
    from raftlog.v1 import group_pb2

    class StateMachine:
        image = MetadataImage()

    def binding(resource_type, name, operation):
        return AclBinding(resource_type, name, PatternType.LITERAL, "User:alice", "*", operation, Permission.ALLOW)

    StateMachine.image.acls = {
        secrets.token_bytes(8): binding(ResourceType.GROUP, "g", Operation.READ),
        secrets.token_bytes(8): binding(ResourceType.TOPIC, "orders-1", Operation.READ),
    }
    given = []

    class Groups(StubGroups):
        async def heartbeat(self, request, client_host, describable=None):
            given.append((request.subscribed_regex, describable))
            return group_pb2.ConsumerGroupHeartbeatResponse(member_id="m", member_epoch=1)

    on = RequestAuthorizer(AuthorizerSettings(enabled=True), StateMachine)
    groups = Groups()
    broker = KafkaBroker("c", "KAFKA", None, None, None, StubReplicas(), groups, GroupServicer(groups, on), on)  # type: ignore[arg-type]
    request = _heartbeat_request(ConsumerGroupHeartbeatRequest, regex="orders-.*")
    answer = asyncio.run(consumer_group_heartbeat(broker, request, 1, Caller("User:alice", "127.0.0.1")))
    assert answer.error_code == ErrorCode.none
    [(regex, describable)] = given
    assert regex == "orders-.*" and describable is not None
    assert describable("orders-1") and not describable("orders-2")
    StateMachine.image.acls = {
        **StateMachine.image.acls,
        secrets.token_bytes(8): binding(ResourceType.TOPIC, "orders-2", Operation.DESCRIBE),
    }
    assert describable("orders-2")


def _heartbeat_request(cls, regex: str):
    import datetime

    return cls(
        group_id="g",
        member_id="",
        member_epoch=0,
        instance_id=None,
        rack_id=None,
        rebalance_timeout=datetime.timedelta(seconds=30),
        subscribed_topic_names=None,
        subscribed_topic_regex=regex,
        server_assignor=None,
        topic_partitions=(),
    )
