"""Named listeners (Kafka's): a client is given the broker addresses of the listener it came in on."""

from __future__ import annotations

import grpc
import pytest

from raftlog.client.admin import Admin
from raftlog.v1 import broker_pb2, broker_pb2_grpc
from tests.integration.conftest import free_port_block, wait_until

pytestmark = pytest.mark.slow


def metadata_hosts(address: str) -> dict[int, str]:
    with grpc.insecure_channel(address) as channel:
        response = broker_pb2_grpc.BrokerServiceStub(channel).Metadata(broker_pb2.MetadataRequest(), timeout=5)
    return {b.broker_id: f"{b.host}:{b.port}" for b in response.brokers}


def test_metadata_answers_with_the_addresses_of_the_listener_the_client_came_in_on(make_cluster):
    external_base = free_port_block(2)
    cluster = make_cluster(nodes=1)
    [spec] = cluster.specs.values()
    internal_port = int(spec.address.rpartition(":")[2])
    external_port = external_base
    # INTERNAL is where peers and in-network clients connect; EXTERNAL is advertised under another
    # name (as a published port is on a Docker host), so the two answers can be told apart.
    cluster.extra_config.update(
        {
            "listeners": f"INTERNAL://127.0.0.1:{internal_port},EXTERNAL://127.0.0.1:{external_port}",
            "advertised.listeners": f"INTERNAL://127.0.0.1:{internal_port},EXTERNAL://localhost:{external_port}",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
            "inter.broker.listener.name": "INTERNAL",
        }
    )
    cluster.start()
    cluster.wait_for_brokers(1)
    node_id = spec.node_id

    internal = wait_until(lambda: metadata_hosts(f"127.0.0.1:{internal_port}"), 15, "metadata on INTERNAL")
    external = wait_until(lambda: metadata_hosts(f"127.0.0.1:{external_port}"), 15, "metadata on EXTERNAL")
    assert internal == {node_id: f"127.0.0.1:{internal_port}"}
    assert external == {node_id: f"localhost:{external_port}"}

    # The admin API describes brokers by the listener too, and a client bootstrapped through
    # EXTERNAL works end to end.
    with Admin(f"127.0.0.1:{external_port}", timeout_ms=5000) as admin:
        brokers = admin.describe_cluster()["brokers"]
    assert [(b["host"], b["port"]) for b in brokers] == [("localhost", external_port)]
