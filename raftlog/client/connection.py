"""Bootstrapping and retrying unary calls across a list of nodes (synchronous gRPC)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from raftlog.channels import error_from_rpc, sync_channel
from raftlog.errors import Errors, RaftlogError, Scope
from raftlog.limits import ADMIN_RETRY_BACKOFF_S as RETRY_BACKOFF_S
from raftlog.tls import ClientSecurity, ProtocolCheck


def retried_by_admin(error: RaftlogError) -> bool:
    """A retriable failure of the call (the cluster is electing, a node is down) is retried, maybe
    on another node; an error about the topic, partition or broker the request names goes to the
    caller at once, as Kafka's AdminClient hands per-resource errors to the caller."""
    return error.retriable and error.error.scope is Scope.CALL


def parse_servers(bootstrap_servers: str | list[str]) -> list[str]:
    servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
    servers = [s.strip() for s in servers if s.strip()]
    if not servers:
        raise ValueError("bootstrap_servers is empty")
    return servers


class Connection:
    """Channels to the bootstrap servers; calls go to the last server that answered."""

    def __init__(
        self, bootstrap_servers: str | list[str], timeout_ms: int = 15000, security: ClientSecurity | None = None
    ):
        self.servers = parse_servers(bootstrap_servers)
        self.timeout_s = timeout_ms / 1000.0
        self.security = security or ClientSecurity()
        self._protocol_check = ProtocolCheck(self.security)
        self._channels: dict[str, grpc.Channel] = {}
        self._preferred = 0

    def channel(self, server: str) -> grpc.Channel:
        if server not in self._channels:
            self._channels[server] = sync_channel(server, self.security)
        return self._channels[server]

    def call(self, stub_factory: Callable[[grpc.Channel], Any], method: str, request, server: str | None = None):
        """Calls stub.method(request), retrying retriable failures on other servers until the timeout."""
        deadline = time.monotonic() + self.timeout_s
        last_error: RaftlogError | None = None
        attempt = 0
        while time.monotonic() < deadline:
            target = server or self.servers[(self._preferred + attempt) % len(self.servers)]
            remaining_s = max(0.05, deadline - time.monotonic())
            try:
                response = getattr(stub_factory(self.channel(target)), method)(request, timeout=remaining_s)
                if server is None:
                    self._preferred = self.servers.index(target)
                return response
            except grpc.RpcError as exc:
                last_error = error_from_rpc(exc)
                if last_error.error is Errors.BROKER_NOT_AVAILABLE:  # not reached: maybe TLS vs plaintext
                    mismatch = self._protocol_check.after_failure(target)
                    if mismatch is not None:
                        raise mismatch from None
                if not retried_by_admin(last_error):
                    raise last_error from None
            attempt += 1
            time.sleep(min(RETRY_BACKOFF_S, max(0.0, deadline - time.monotonic())))
        raise last_error or RaftlogError("REQUEST_TIMED_OUT", f"no answer from {','.join(self.servers)}")

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
