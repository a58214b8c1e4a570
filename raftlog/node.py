"""One raftlog node: its gRPC servers carrying the Raft quorum, the controller, the broker and the admin API.

Roles (`process.roles`, Kafka's): a `controller` votes in the metadata quorum (and is the active
controller when it leads); a `broker` registers with the controller, holds partitions and serves
produce and fetch. A broker-only node follows the metadata log as a Raft observer; a
controller-only node never registers, so placement gives it no partitions, and it answers a
client's Metadata from its image with the brokers (a client bootstrapped to it moves on to them).

The node owns its background tasks (raftlog.tasks.TaskSupervisor) and its run loop (`Node.run`):
it serves until asked to stop (SIGTERM, SIGINT) or until a task it cannot run without fails, in
which case it reports NOT_SERVING, stops and returns a one-line reason for a non-zero exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from raftlog.api.acl_service import AclServicer
from raftlog.api.admin_service import AdminServicer
from raftlog.api.authorization import RequestAuthorizer
from raftlog.api.authorization import settings_from as authorizer_settings_from
from raftlog.api.broker_service import BrokerServicer, ReplicationServicer
from raftlog.api.controller_service import ControllerServicer
from raftlog.api.forwarding import forward
from raftlog.api.group_service import GroupServicer
from raftlog.api.sasl_service import ListenerAuthentication, SaslServicer
from raftlog.authentication import Authenticator
from raftlog.broker.controller_channel import ControllerChannel
from raftlog.broker.lifecycle import BrokerLifecycle
from raftlog.broker.producer_ids import ProducerIdManager
from raftlog.channels import SERVER_KEEPALIVE_OPTIONS, Peers
from raftlog.config import PLAINTEXT, SASL_PROTOCOLS, SSL, TLS_PROTOCOLS, NodeConfig
from raftlog.controller.active import ActiveController
from raftlog.errors import RaftlogError
from raftlog.groups.coordinator import GroupCoordinator
from raftlog.groups.offset_store import OffsetStore
from raftlog.kafka.handlers import KafkaBroker
from raftlog.kafka.server import KafkaServer
from raftlog.limits import MAX_MESSAGE_BYTES
from raftlog.log.file_cache import SEGMENT_FILES
from raftlog.metadata.state_machine import MetadataStateMachine
from raftlog.metrics.registry import (
    NodeMetrics,
    clock_gauges,
    group_gauges,
    partition_gauges,
    raft_gauges,
)
from raftlog.principals import PrincipalMapper
from raftlog.raft import DriverSettings, RaftDriver
from raftlog.replication.log_adapter import open_replica_log
from raftlog.replication.manager import ReplicaManager
from raftlog.store import Store
from raftlog.tasks import TaskSupervisor
from raftlog.tls import ClientSecurity, PeerAuthenticator, ServerTls, SocketServerTls, TlsError, TlsFiles
from raftlog.v1 import (
    acls_pb2,
    acls_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    broker_pb2,
    broker_pb2_grpc,
    controller_pb2,
    controller_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
    raft_pb2,
    replication_pb2,
    replication_pb2_grpc,
    sasl_pb2,
    sasl_pb2_grpc,
)

log = logging.getLogger(__name__)

GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    *SERVER_KEEPALIVE_OPTIONS,
    # gRPC sets SO_REUSEPORT by default: a second node (another cluster left running) on the same
    # port would bind too, and the kernel would share clients between the two clusters at random.
    ("grpc.so_reuseport", 0),
]


class NodeStartError(RuntimeError):
    """The node cannot start; the message is one line for the operator."""


def _driver_settings(config: NodeConfig) -> DriverSettings:
    return DriverSettings(
        tick_ms=config["controller.quorum.tick.ms"],
        election_timeout_ms=config["controller.quorum.election.timeout.ms"],
        heartbeat_interval_ms=config["controller.quorum.heartbeat.interval.ms"],
        snapshot_interval_entries=config["metadata.snapshot.interval.records"],
    )


def _security(config: NodeConfig) -> tuple[ClientSecurity, dict[str, ServerTls], dict[str, SocketServerTls]]:
    """How this node reaches its peers, and the TLS of each SSL gRPC and Kafka listener (by name).
    Internal SSL listeners always require a client certificate: the node id check reads it."""
    files = TlsFiles.from_config(config)
    servers = {}
    for name, protocol in config.security.protocols.items():
        if protocol in TLS_PROTOCOLS:
            # SASL_SSL asks for no client certificate: the principal is the SASL login's.
            client_auth = (
                "required"
                if name in config.security.internal
                else "none"
                if protocol != SSL
                else config["ssl.client.auth"]
            )
            try:
                servers[name] = ServerTls(files, client_auth)
            except TlsError as exc:
                raise NodeStartError(f"listener {name}: {exc}") from None
    kafka = {}
    for name, protocol in config.kafka_security.items():
        if protocol in TLS_PROTOCOLS:
            # As on gRPC, SASL_SSL asks for no client certificate: the principal is the SASL login's.
            try:
                kafka[name] = SocketServerTls(
                    files,
                    config["ssl.client.auth"] if protocol == SSL else "none",
                    PrincipalMapper(config["ssl.principal.mapping.rules"]),
                )
            except TlsError as exc:
                raise NodeStartError(f"Kafka listener {name}: {exc}") from None
    peer_protocol = config.security.peer_protocol
    peer_files = files if peer_protocol == SSL else TlsFiles(None, None, None)
    return ClientSecurity(peer_protocol, peer_files), servers, kafka


class Node:
    def __init__(self, config: NodeConfig, cluster_id: str):
        self.config = config
        self.cluster_id = cluster_id
        self.metrics = NodeMetrics()
        self.tasks = TaskSupervisor(count_error=lambda loop: self.metrics.background_errors.labels(loop).inc())
        self.is_broker = "broker" in config.roles
        SEGMENT_FILES.set_limit(config["log.open.files.max"])  # one cache of log descriptors per process
        voter_addresses = {voter_id: str(address) for voter_id, address in config.voters.items()}
        self.peer_security, self.server_tls, self.kafka_tls = _security(config)  # TLS: raftlog/tls.py
        # Voters are reached at their voter address, broker-only nodes (partition leaders to fetch
        # from) at the address they registered.
        self.peers = Peers(voter_addresses, self.peer_security, resolve=self._registered_address)
        self.store = Store(config.metadata_dir / "rocksdb")
        self.state_machine = MetadataStateMachine()
        self.driver = RaftDriver(
            node_id=config.node_id,
            voters=voter_addresses,
            cluster_id=cluster_id,
            store=self.store,
            state_machine=self.state_machine,
            settings=_driver_settings(config),
            tasks=self.tasks,
            security=self.peer_security,
            own_address=str(config.advertised),
            controller="controller" in config.roles,
        )
        self.driver.on_leader_change(self._leader_changed)
        self.controller = ActiveController(self.driver, self.state_machine, config, self.tasks)
        self.controller_channel = ControllerChannel(
            self.peers, lambda: self.driver.status().leader_id, config["broker.session.timeout.ms"]
        )
        self.lifecycle = BrokerLifecycle(
            cluster_id=cluster_id,
            broker_id=config.node_id,
            advertised_host=config.advertised.host,
            advertised_port=config.advertised.port,
            controller=self.controller_channel,
            metadata_offset=lambda: self.driver.status().applied_index,
            heartbeat_interval_ms=config["broker.heartbeat.interval.ms"],
            session_timeout_ms=config["broker.session.timeout.ms"],
            tasks=self.tasks,
            offline_replicas=lambda: self.replicas.offline_replicas(),
            clock_skew_max_ms=config["broker.clock.skew.max.ms"],
            advertised_listeners=tuple(
                (a.name, a.host, a.port) for a in (*config.advertised_listeners, *config.kafka_advertised_listeners)
            ),
        )
        broker_epoch = lambda: self.lifecycle.broker_epoch  # noqa: E731
        self.replicas = ReplicaManager(
            broker_id=config.node_id,
            cluster_id=cluster_id,
            config=config,
            state_machine=self.state_machine,
            peers=self.peers,
            controller=self.controller_channel,
            broker_epoch=broker_epoch,
            log_factory=lambda topic, index, log_config: open_replica_log(
                config.log_dirs, topic, index, log_config, offline_dirs=self.replicas.offline_log_dirs
            ),
            tasks=self.tasks,
            metrics=self.metrics,
            time_retention_allowed=lambda: self.lifecycle.clock_skew.time_retention_allowed,
        )
        self.replicas.on_offline_change = self.lifecycle.heartbeat_now
        self.groups = GroupCoordinator(
            config.node_id,
            config,
            self.replicas,
            OffsetStore(self.store),
            self._create_internal_topic,
            self.tasks,
            self.metrics,
        )
        self.producer_ids = ProducerIdManager(cluster_id, config.node_id, self.controller_channel, broker_epoch)
        self.health = health.aio.HealthServicer()
        self.authorizer_settings = authorizer_settings_from(config)  # ACLs: raftlog/api/authorization.py
        # SASL logins and session tokens against the SCRAM credentials in the image (SASL_* listeners).
        self.authenticator = Authenticator(
            lambda: self.state_machine.image,
            config.sasl_mechanisms,
            config["sasl.session.token.lifetime.ms"],
            self.metrics,
        )
        # One gRPC server per named listener: a servicer knows the listener its calls came in on
        # (gRPC does not tell a handler which local port it was). Internal listeners carry every
        # service, client listeners only the client ones (_build_server).
        self.servers = {listener.name: self._build_server(listener.name) for listener in config.listeners}
        self.kafka_servers = [self._build_kafka_server(listener) for listener in config.kafka_listeners]

    async def _create_internal_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        """Creates an internal topic (__consumer_offsets) through the active controller."""
        status = self.driver.status()
        if status.leader_id == status.node_id:
            await self.controller.create_topic(name, partitions, replication_factor, configs, False)
            return
        if status.leader_id is None:
            raise RaftlogError("COORDINATOR_NOT_AVAILABLE", "no active controller to create the offsets topic")
        stub = admin_pb2_grpc.AdminServiceStub(self.peers.channel(status.leader_id))
        request = admin_pb2.CreateTopicRequest(
            name=name, partitions=partitions, replication_factor=replication_factor, configs=configs
        )
        await forward(stub.CreateTopic, request)

    def _registered_address(self, node_id: int) -> str | None:
        """A voter added since start (its address is in the configuration entry), else the address
        a broker registered."""
        voter_address = self.driver.core.voter_addresses.get(node_id)
        if voter_address:
            return voter_address
        broker = self.state_machine.image.brokers.get(node_id)
        return broker.address if broker is not None else None

    def _leader_changed(self, leader_id: int | None, term: int) -> None:
        self.metrics.raft_leader_changes.inc()
        log.info("node %d: leader is now %s in term %d", self.config.node_id, leader_id, term)

    def _build_server(self, listener: str) -> grpc.aio.Server:
        internal = listener in self.config.security.internal
        protocol = self.config.security.protocols[listener]
        peer_authenticator = PeerAuthenticator(
            PrincipalMapper(self.config["ssl.principal.mapping.rules"]),
            require_node_certificate=internal and protocol == SSL,
        )
        # Who each call is (raftlog/principals.py request_principal): certificates on SSL, session
        # tokens on SASL_* (calls without one refused), nobody on PLAINTEXT (no interceptor at all).
        interceptors = (
            []
            if protocol == PLAINTEXT
            else [ListenerAuthentication(listener, protocol, self.authenticator, peer_authenticator)]
        )
        server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=interceptors)
        services = [
            admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
            broker_pb2.DESCRIPTOR.services_by_name["BrokerService"].full_name,
            group_pb2.DESCRIPTOR.services_by_name["GroupService"].full_name,
            acls_pb2.DESCRIPTOR.services_by_name["AclService"].full_name,
            health.SERVICE_NAME,
        ]
        authorizer = RequestAuthorizer(self.authorizer_settings, self.state_machine, peer_authenticator, self.metrics)
        if protocol in SASL_PROTOCOLS:
            sasl_pb2_grpc.add_SaslServiceServicer_to_server(
                SaslServicer(self.authenticator, listener, self.metrics), server
            )
            services.append(sasl_pb2.DESCRIPTOR.services_by_name["SaslService"].full_name)
        admin = AdminServicer(
            self.cluster_id, self.config, self.driver, self.controller, self.peers, authorizer, self.metrics, listener
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)
        broker = BrokerServicer(
            self.cluster_id,
            self.driver,
            self.state_machine,
            self.replicas,
            self.producer_ids,
            authorizer,
            self.metrics,
            listener,
        )
        broker_pb2_grpc.add_BrokerServiceServicer_to_server(broker, server)
        group_pb2_grpc.add_GroupServiceServicer_to_server(
            GroupServicer(self.groups, authorizer, self.metrics, listener), server
        )
        acls = AclServicer(self.driver, self.controller, self.peers, authorizer, self.metrics)
        acls_pb2_grpc.add_AclServiceServicer_to_server(acls, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if internal:  # Raft, controller and replica traffic: only here, and from the node it claims to be
            authenticator = peer_authenticator
            self.driver.add_to_server(server, authenticator)
            controller = ControllerServicer(self.cluster_id, self.controller, self.metrics, authenticator)
            controller_pb2_grpc.add_ControllerServiceServicer_to_server(controller, server)
            replication = ReplicationServicer(self.replicas, self.metrics, authenticator)
            replication_pb2_grpc.add_ReplicationServiceServicer_to_server(replication, server)
            services += [
                controller_pb2.DESCRIPTOR.services_by_name["ControllerService"].full_name,
                replication_pb2.DESCRIPTOR.services_by_name["ReplicationService"].full_name,
                raft_pb2.DESCRIPTOR.services_by_name["RaftService"].full_name,
            ]
        if self.config["grpc.reflection.enable"]:
            reflection.enable_server_reflection((*services, reflection.SERVICE_NAME), server)
        return server

    def _build_kafka_server(self, listener) -> KafkaServer:
        """A Kafka protocol listener over the same objects as the gRPC servers, its servicers built
        for its name (so Metadata and FindCoordinator give Kafka addresses)."""
        # The KafkaServer names each request's caller itself (its SASL login or client certificate),
        # so this authorizer needs no gRPC authenticator.
        authorizer = RequestAuthorizer(self.authorizer_settings, self.state_machine, None, self.metrics)
        broker = KafkaBroker(
            cluster_id=self.cluster_id,
            listener=listener.name,
            driver=self.driver,
            broker=BrokerServicer(
                self.cluster_id,
                self.driver,
                self.state_machine,
                self.replicas,
                self.producer_ids,
                authorizer,
                None,
                listener.name,
            ),
            admin=AdminServicer(
                self.cluster_id, self.config, self.driver, self.controller, self.peers, authorizer, None, listener.name
            ),
            replicas=self.replicas,
            groups=self.groups,
            group_servicer=GroupServicer(self.groups, authorizer, None, listener.name),
            authorizer=authorizer,
        )
        return KafkaServer(
            broker,
            listener.host,
            listener.port,
            self.metrics,
            self.kafka_tls.get(listener.name),
            self.authenticator,
            self.config.kafka_security[listener.name],
        )

    async def start(self) -> None:
        for listener in self.config.listeners:
            address = str(listener.address)
            server_tls = self.server_tls.get(listener.name)
            try:
                if server_tls is not None:
                    port = self.servers[listener.name].add_secure_port(address, server_tls.credentials())
                else:
                    port = self.servers[listener.name].add_insecure_port(address)
            except RuntimeError as exc:
                raise NodeStartError(f"cannot listen on {address} ({listener.name}): {exc}") from None
            if port == 0:
                raise NodeStartError(f"cannot listen on {address} ({listener.name}): address in use or not available")
        for server in self.servers.values():
            await server.start()
        for kafka, listener in zip(self.kafka_servers, self.config.kafka_listeners):
            try:
                await kafka.start()
            except OSError as exc:
                raise NodeStartError(f"cannot listen on {listener.address} ({listener.name}, Kafka): {exc}") from None
            self.tasks.spawn(kafka.serve(), name=f"kafka-listener-{listener.name}", critical=True)
        await self.replicas.start()
        await self.driver.start()
        await self.controller.start()
        if self.is_broker:  # a controller-only node never registers: no partitions are placed on it
            await self.lifecycle.start()
        await self.groups.start()
        if self.config["metrics.port"]:
            self.metrics.add_gauges(raft_gauges(self.driver.status))
            self.metrics.add_gauges(partition_gauges(self.replicas))
            self.metrics.add_gauges(clock_gauges(self.lifecycle.clock_skew))
            self.metrics.add_gauges(group_gauges(self.groups))
            self.metrics.serve(self.config["metrics.host"], self.config["metrics.port"])
        await self._set_serving(True)
        log.info(
            "node %d (%s, %s) serving on %s (cluster %s)",
            self.config.node_id,
            ",".join(self.config.roles),
            "voter" if self.driver.core.is_voter else "observer",
            ", ".join(str(listener) for listener in (*self.config.listeners, *self.config.kafka_listeners)),
            self.cluster_id,
        )

    async def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", status)

    async def run(self, stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> str | None:
        """Starts the node and serves until a stop signal (returns None) or a fatal task failure
        (returns its one-line reason, after stopping the node as cleanly as it still can)."""
        await self.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in stop_signals:
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_certificates)
        stop_requested = asyncio.ensure_future(stopping.wait())
        failed = asyncio.ensure_future(self.tasks.wait_failed())
        try:
            await asyncio.wait({stop_requested, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for sig in (*stop_signals, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            stop_requested.cancel()
            failed.cancel()
        failure = self.tasks.failure
        if failure is not None:
            await self._set_serving(False)  # at once: health checks see it before the slow parts
        try:
            await asyncio.wait_for(self.stop(), timeout=self.config["shutdown.timeout.ms"] / 1000.0)
        except TimeoutError:
            log.warning("node %d: clean shutdown took too long; exiting anyway", self.config.node_id)
        return failure

    def reload_certificates(self) -> None:
        """SIGHUP: new connections load the TLS files again (they are also reloaded when they change)."""
        log.info("node %d: reloading TLS certificates on the next handshake", self.config.node_id)
        for server_tls in self.server_tls.values():
            server_tls.request_reload()
        for kafka_tls in self.kafka_tls.values():
            kafka_tls.request_reload()

    async def stop(self) -> None:
        """Clean shutdown: fence this broker, hand leadership over, then close everything."""
        log.info("node %d shutting down", self.config.node_id)
        self.tasks.shutdown_started()
        await self._set_serving(False)
        await self.lifecycle.stop()
        await self.replicas.stop()
        await self.controller.stop()
        await self.driver.stop(transfer_leadership=self.tasks.failure is None)
        await asyncio.gather(*(server.stop(grace=0.5) for server in self.servers.values()))
        await asyncio.gather(*(kafka.stop() for kafka in self.kafka_servers))
        await self.tasks.stop()
        await self.peers.close()
        self.metrics.stop()
        self.store.close()
        log.info("node %d stopped", self.config.node_id)
