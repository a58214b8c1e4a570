"""ControllerChannel: the only way a broker calls the controller (Kafka's NodeToControllerChannelManager).

Heartbeats and registration (lifecycle.py), AlterPartition (replication/manager.py) and
producer-id blocks (producer_ids.py) all go through ``call``, which

- finds the active controller: the Raft leader this node knows of, or the one a NOT_CONTROLLER
  answer names;
- retries, within the call's budget, the errors that say the controller moved or could not be
  reached (REFRESH_METADATA errors about the call: NOT_CONTROLLER, BROKER_NOT_AVAILABLE,
  NETWORK_EXCEPTION); every other error goes to the caller;
- owns the timeout rule: a call gives up after a quarter of broker.session.timeout.ms (at most
  3 s), so that a call stuck on a controller that was cut off ends in time for the broker to
  reach its successor before its session expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from raftlog.channels import Peers, error_from_rpc
from raftlog.errors import Errors, RaftlogError, Scope
from raftlog.limits import CONTROLLER_CALL_MAX_TIMEOUT_S as MAX_CALL_TIMEOUT_S
from raftlog.limits import CONTROLLER_CALL_RETRY_BACKOFF_S as RETRY_BACKOFF_S
from raftlog.v1 import controller_pb2_grpc


def call_timeout_s(session_timeout_ms: int) -> float:
    """A quarter session: a stuck call leaves three quarters for reaching the next controller."""
    return min(MAX_CALL_TIMEOUT_S, session_timeout_ms / 4000.0)


def _finds_the_controller_again(error: RaftlogError) -> bool:
    return error.refresh_metadata and error.error.scope is Scope.CALL


class ControllerChannel:
    def __init__(self, peers: Peers, controller_id: Callable[[], int | None], session_timeout_ms: int):
        self._peers = peers
        self._controller_id = controller_id  # the active controller as this node's Raft knows it
        self.timeout_s = call_timeout_s(session_timeout_ms)

    async def call(self, method_name: str, request):
        """ControllerService.<method_name>(request) on the active controller; raises RaftlogError."""
        deadline = time.monotonic() + self.timeout_s
        hint: int | None = None  # the controller a NOT_CONTROLLER answer named
        while True:
            target = hint if hint is not None else self._controller_id()
            try:
                if target is None:
                    raise RaftlogError(Errors.NOT_CONTROLLER, "no active controller is known yet")
                stub = controller_pb2_grpc.ControllerServiceStub(self._peers.channel(target))
                remaining_s = deadline - time.monotonic()
                return await getattr(stub, method_name)(request, timeout=max(0.001, remaining_s))
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            except RaftlogError as exc:
                error = exc
            if not _finds_the_controller_again(error) or time.monotonic() + RETRY_BACKOFF_S >= deadline:
                raise error
            # A node that is not the controller names the one it knows of; if it knows none, or
            # named the node just asked, this node's own view decides the next try.
            hint = error.leader_id if error.error is Errors.NOT_CONTROLLER and error.leader_id != target else None
            await asyncio.sleep(RETRY_BACKOFF_S)
