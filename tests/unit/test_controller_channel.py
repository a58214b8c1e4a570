"""The broker's one channel to the controller: finds the active controller, retries NOT_CONTROLLER
within the call's budget, and every call (producer ids included) has the quarter-session deadline."""

import asyncio

import pytest

from raftlog.broker.controller_channel import ControllerChannel, call_timeout_s
from raftlog.broker.producer_ids import ProducerIdManager
from raftlog.channels import Peers
from raftlog.config import SCHEMA
from raftlog.errors import Errors, RaftlogError
from raftlog.v1 import controller_pb2
from tests.unit.stub_controller import StubController

SESSION_TIMEOUT_MS = SCHEMA["broker.session.timeout.ms"].default
# The server recomputes a deadline from the grpc-timeout header (rounded up to the header's unit,
# then converted between clocks): what arrives can exceed what was sent by a little (0.5005 s for
# 0.5 s was seen in CI).
# The old fault was a 5 s deadline, ten times the bound, so this slack cannot hide it.
DEADLINE_ENCODING_SLACK_S = 0.01


async def _started(*stubs: StubController) -> Peers:
    return Peers({stub.node_id: await stub.start() for stub in stubs})


async def _stopped(peers: Peers, *stubs: StubController) -> None:
    await peers.close()
    for stub in stubs:
        await stub.stop()


def test_producer_id_allocation_waits_no_longer_than_any_other_controller_call():
    # It used to wait 5 s whatever the session: a broker whose controller was cut off kept its
    # producers' InitProducerId hanging for most of that time instead of reaching the next one.
    async def scenario():
        controller = StubController(1)
        peers = await _started(controller)
        try:
            channel = ControllerChannel(peers, lambda: 1, SESSION_TIMEOUT_MS)
            manager = ProducerIdManager("c", 2, channel, broker_epoch=lambda: 5)
            assert [await manager.next_id(), await manager.next_id()] == [1000, 1001]
            assert controller.calls == ["AllocateProducerIds"]
            assert call_timeout_s(SESSION_TIMEOUT_MS) == SESSION_TIMEOUT_MS / 4000
            assert max(controller.deadlines_s) <= call_timeout_s(SESSION_TIMEOUT_MS) + DEADLINE_ENCODING_SLACK_S
        finally:
            await _stopped(peers, controller)

    asyncio.run(scenario())


def test_not_controller_is_retried_on_the_controller_it_names():
    async def scenario():
        stale, active = StubController(1, active=False, leader_hint=2), StubController(2)
        peers = await _started(stale, active)
        try:
            channel = ControllerChannel(peers, lambda: 1, SESSION_TIMEOUT_MS)  # this node's view is stale
            response = await channel.call("BrokerHeartbeat", controller_pb2.BrokerHeartbeatRequest())
            assert not response.is_fenced
            assert (stale.calls, active.calls) == (["BrokerHeartbeat"], ["BrokerHeartbeat"])
        finally:
            await _stopped(peers, stale, active)

    asyncio.run(scenario())


def test_not_controller_without_a_hint_follows_this_nodes_view_of_the_controller():
    async def scenario():
        old, new = StubController(1, active=False), StubController(2)
        peers = await _started(old, new)
        views = iter([None, 1])  # no controller known yet, then the old one, then (for good) the new one
        try:
            channel = ControllerChannel(peers, lambda: next(views, 2), SESSION_TIMEOUT_MS)
            await channel.call("BrokerHeartbeat", controller_pb2.BrokerHeartbeatRequest())
            assert (old.calls, new.calls) == (["BrokerHeartbeat"], ["BrokerHeartbeat"])
        finally:
            await _stopped(peers, old, new)

    asyncio.run(scenario())


def test_not_controller_past_the_budget_reaches_the_caller():
    async def scenario():
        stuck = StubController(1, active=False)
        peers = await _started(stuck)
        try:
            channel = ControllerChannel(peers, lambda: 1, SESSION_TIMEOUT_MS)
            with pytest.raises(RaftlogError) as info:
                await channel.call("BrokerHeartbeat", controller_pb2.BrokerHeartbeatRequest())
            assert info.value.error is Errors.NOT_CONTROLLER
            assert len(stuck.calls) >= 2  # retried, then gave up at the deadline
        finally:
            await _stopped(peers, stuck)

    asyncio.run(scenario())


def test_an_error_that_is_not_about_finding_the_controller_is_not_retried():
    async def scenario():
        controller = StubController(1)
        controller.error = RaftlogError("STALE_BROKER_EPOCH", "broker 2 epoch is 9, not 5")
        peers = await _started(controller)
        try:
            channel = ControllerChannel(peers, lambda: 1, SESSION_TIMEOUT_MS)
            with pytest.raises(RaftlogError) as info:
                await channel.call("BrokerHeartbeat", controller_pb2.BrokerHeartbeatRequest())
            assert info.value.error is Errors.STALE_BROKER_EPOCH and controller.calls == ["BrokerHeartbeat"]
        finally:
            await _stopped(peers, controller)

    asyncio.run(scenario())
