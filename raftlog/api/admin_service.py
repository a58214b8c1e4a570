"""AdminService: quorum and cluster description, dynamic configs, the quorum benchmark.

Reads are served from this node's metadata image, as Kafka brokers serve metadata from
their cache; a request may name the metadata offset it must see (read-your-writes), and
the node waits, bounded, until it has applied that far. Writes and the quorum view go to
the active controller, forwarded there when this node is not it.
"""

from __future__ import annotations

import asyncio
import time

from raftlog import config as node_config
from raftlog.api.peers import Peers, forward, was_forwarded
from raftlog.api.status import rpc
from raftlog.controller.active import ActiveController
from raftlog.errors import RaftlogError
from raftlog.v1 import admin_pb2, admin_pb2_grpc, metadata_pb2

MAX_BENCHMARK_WRITES = 1_000_000
OFFSET_WAIT_TIMEOUT_S = 5.0
OFFSET_WAIT_POLL_S = 0.005


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, cluster_id: str, config: node_config.NodeConfig, driver, controller: ActiveController,
                 peers: Peers, metrics=None):
        self._cluster_id = cluster_id
        self._config = config
        self._driver = driver
        self._controller = controller
        self._peers = peers
        self.metrics = metrics

    def _controller_stub(self, context) -> admin_pb2_grpc.AdminServiceStub | None:
        """A stub on the active controller, or None when this node is it."""
        status = self._driver.status()
        if status.leader_id == status.node_id:
            return None
        if status.leader_id is None or was_forwarded(context):
            raise RaftlogError("NOT_CONTROLLER", "no active controller is known; retry", status.leader_id)
        return admin_pb2_grpc.AdminServiceStub(self._peers.channel(status.leader_id))

    async def _await_offset(self, offset: int) -> None:
        """Waits until this node's image has applied `offset`."""
        deadline = time.monotonic() + OFFSET_WAIT_TIMEOUT_S
        while self._driver.status().applied_index < offset:
            if time.monotonic() > deadline:
                raise RaftlogError(
                    "REQUEST_TIMED_OUT", f"this node has not applied metadata offset {offset} yet; retry"
                )
            await asyncio.sleep(OFFSET_WAIT_POLL_S)

    @rpc("DescribeQuorum")
    async def DescribeQuorum(self, request, context):
        stub = self._controller_stub(context)
        if stub is not None:
            return await forward(stub.DescribeQuorum, request)
        status = self._driver.status()
        response = admin_pb2.DescribeQuorumResponse(
            cluster_id=self._cluster_id,
            leader_id=status.node_id,
            leader_epoch=status.term,
            high_watermark=status.commit_index,
        )
        for voter_id in sorted(self._config.voters):
            response.voters.append(_voter_state(status, voter_id))
        return response

    @rpc("DescribeCluster")
    async def DescribeCluster(self, request, context):
        await self._await_offset(request.min_metadata_offset)
        status = self._driver.status()
        image = self._controller.image
        response = admin_pb2.DescribeClusterResponse(
            cluster_id=self._cluster_id,
            controller_id=-1 if status.leader_id is None else status.leader_id,
            metadata_offset=image.offset,
        )
        for broker in sorted(image.brokers.values(), key=lambda b: b.broker_id):
            response.brokers.append(
                metadata_pb2.BrokerRegistration(
                    broker_id=broker.broker_id,
                    incarnation_id=broker.incarnation_id,
                    broker_epoch=broker.epoch,
                    endpoint=metadata_pb2.Endpoint(host=broker.host, port=broker.port),
                    rack=broker.rack,
                    fenced=broker.fenced,
                )
            )
        return response

    @rpc("DescribeConfigs")
    async def DescribeConfigs(self, request, context):
        resource = request.resource
        if resource.type != "brokers":
            raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"topic {resource.name!r} does not exist")
        await self._await_offset(request.min_metadata_offset)
        entries = _broker_config_entries(self._controller.image, self._config, resource.name, request.include_static)
        return admin_pb2.DescribeConfigsResponse(resource=resource, entries=entries)

    @rpc("IncrementalAlterConfigs")
    async def IncrementalAlterConfigs(self, request, context):
        stub = self._controller_stub(context)
        if stub is not None:
            return await forward(stub.IncrementalAlterConfigs, request)
        offset = await self._controller.alter_configs(request.resource, list(request.ops), request.validate_only)
        return admin_pb2.IncrementalAlterConfigsResponse(offset=offset)

    @rpc("BenchmarkQuorum")
    async def BenchmarkQuorum(self, request, context):
        if not 0 < request.count <= MAX_BENCHMARK_WRITES or request.concurrency < 1 or request.payload_bytes < 0:
            raise RaftlogError("INVALID_REQUEST", f"count must be 1..{MAX_BENCHMARK_WRITES}, concurrency >= 1")
        stub = self._controller_stub(context)
        if stub is not None:
            return await forward(stub.BenchmarkQuorum, request, timeout_s=600.0)
        committed, elapsed_s, latencies_ms = await self._controller.benchmark(
            request.count, request.concurrency, request.payload_bytes
        )
        return admin_pb2.BenchmarkQuorumResponse(committed=committed, elapsed_s=elapsed_s, latencies_ms=latencies_ms)


def _voter_state(status, voter_id: int) -> admin_pb2.VoterState:
    if voter_id == status.node_id:
        return admin_pb2.VoterState(
            node_id=voter_id, log_end_offset=status.last_index, last_fetch_ms_ago=0, last_caught_up_ms_ago=0,
            is_leader=True,
        )
    progress = status.progress.get(voter_id)
    if progress is None:
        return admin_pb2.VoterState(node_id=voter_id, log_end_offset=0, last_fetch_ms_ago=-1, last_caught_up_ms_ago=-1)
    return admin_pb2.VoterState(
        node_id=voter_id,
        log_end_offset=progress.match_index,
        last_fetch_ms_ago=_ms_or_unknown(progress.last_contact_ms_ago),
        last_caught_up_ms_ago=_ms_or_unknown(progress.last_caught_up_ms_ago),
    )


def _ms_or_unknown(value: float | None) -> int:
    return -1 if value is None else int(value)


def _broker_config_entries(image, config: node_config.NodeConfig, broker_name: str, include_static: bool):
    """Effective broker configs by Kafka's precedence: per-broker dynamic > default dynamic > static > default."""
    per_broker = image.dynamic_config("brokers", broker_name) if broker_name else {}
    cluster_default = image.dynamic_config("brokers", "")
    entries = []
    for key in sorted(node_config.SCHEMA.values(), key=lambda k: k.name):
        if key.name in per_broker:
            value, source = per_broker[key.name], "DYNAMIC_BROKER_CONFIG"
        elif key.name in cluster_default:
            value, source = cluster_default[key.name], "DYNAMIC_DEFAULT_BROKER_CONFIG"
        elif not include_static:
            continue
        elif key.name in config.explicit:
            value, source = node_config.format_value(config[key.name]), "STATIC_BROKER_CONFIG"
        else:
            value, source = node_config.format_value(config[key.name]), "DEFAULT_CONFIG"
        entries.append(admin_pb2.ConfigEntry(name=key.name, value=value, source=source, read_only=not key.dynamic))
    return entries
