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
