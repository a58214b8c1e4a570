"""Who sent the request being answered: the client id of its header and the peer's address, set by
the server (raftlog/kafka/server.py) for each request and read by handlers that record them (a
group member's client id and host, as Kafka's DescribeGroups shows them)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClientInfo:
    client_id: str
    host: str


NO_CLIENT = ClientInfo("", "")  # frozen: safe to share as the default
CURRENT_CLIENT: contextvars.ContextVar[ClientInfo] = contextvars.ContextVar("kafka_client", default=NO_CLIENT)
