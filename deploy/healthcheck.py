"""The image's HEALTHCHECK: asks the node's own inter-broker listener for grpc.health.v1 status.

Exit 0 when the node answers SERVING, 1 otherwise (docker's healthy/unhealthy). The address
comes from the same RAFTLOG_* configuration the node reads; a wildcard host is checked on
loopback. An SSL inter-broker listener is asked over TLS with the node's own certificate, as its
peers ask it.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from raftlog.config import ConfigError, load_config
from raftlog.tls import ClientSecurity, TlsError, TlsFiles

TIMEOUT_S = 2.0
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def main() -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"healthcheck: invalid configuration: {exc}", file=sys.stderr)
        return 1
    listener = config.listener
    host = "127.0.0.1" if listener.host in WILDCARD_HOSTS else listener.host
    address = f"{host}:{listener.port}"
    protocol = config.security.peer_protocol
    try:
        security = ClientSecurity(
            protocol, TlsFiles.from_config(config) if protocol == "SSL" else TlsFiles(None, None, None)
        )
        channel = (
            grpc.secure_channel(address, security.channel_credentials())
            if security.tls
            else grpc.insecure_channel(address)
        )
    except TlsError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    try:
        with channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        print(f"healthcheck: {address}: {exc.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"healthcheck: {address}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
