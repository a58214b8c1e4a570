"""Node configuration: Kafka's key names, from a TOML file, RAFTLOG_* environment variables
and --set flags, in rising priority.

A TOML file may write keys flat (``"node.id" = 1``) or nested (``[node] id = 1``); both
mean the key ``node.id``. The environment variable for a key is ``RAFTLOG_`` plus the key
upper-cased with dots turned into underscores (``RAFTLOG_NODE_ID``). Every value is
validated against the schema below, and contradictions between keys are reported in one
line before the node touches its data directories.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftlog.limits import (
    LOG_OPEN_FILES_MAX,
    MAX_MESSAGE_BYTES,
    REPLICA_FETCH_MAX_BYTES,
    REPLICA_FETCH_MAX_WAIT_MS,
    REPLICA_FETCH_TIMEOUT_S,
)
from raftlog.principals import DEFAULT_MAPPING_RULES, PrincipalMapper, PrincipalRuleError, parse_super_users
from raftlog.topic_config import TOPIC_SCHEMA, TopicConfigError, validate_topic_config

ENV_PREFIX = "RAFTLOG_"
# authorizer.class.name values that turn on raftlog's ACL authorizer; "" is off (Kafka's default).
AUTHORIZER_CLASS_NAMES = frozenset(
    {"", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "raftlog.authorizer.StandardAuthorizer"}
)
REPLICATION_THROTTLE_UNLIMITED = 2**63 - 1  # Kafka's default rate: Long.MAX_VALUE, no throttle


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line meant for an operator."""


@dataclass(frozen=True)
class ConfigKey:
    name: str
    kind: type  # int, float, str, bool or list (comma-separated strings)
    default: Any
    doc: str
    dynamic: bool = False  # may be changed at run time with `raftlog configs alter --entity-type brokers`
    minimum: int | None = None

    @property
    def env_name(self) -> str:
        return _env_name(self.name)


_KEYS = [
    ConfigKey("node.id", int, None, "This node's id; a controller's must be one of controller.quorum.voters."),
    ConfigKey(
        "process.roles",
        list,
        ["broker", "controller"],
        "Roles of this node: broker (holds partitions; alone, it follows the metadata log as a Raft "
        "observer without voting) and/or controller (votes in the metadata quorum; alone, it holds no "
        "partitions).",
    ),
    ConfigKey(
        "controller.quorum.voters", list, None, "id@host:port of every voter (only the voters), comma-separated."
    ),
    ConfigKey(
        "listeners",
        str,
        None,
        "Where the node's gRPC servers listen: host:port, or NAME://host:port,... for named listeners "
        "(default: its voter address).",
    ),
    ConfigKey(
        "advertised.listeners",
        str,
        None,
        "Addresses given to clients, per listener name (default: the listeners' own addresses).",
    ),
    ConfigKey(
        "listener.security.protocol.map",
        list,
        ["PLAINTEXT:PLAINTEXT"],
        "NAME:PROTOCOL of every listener name (gRPC and Kafka); PROTOCOL is PLAINTEXT, SSL, "
        "SASL_PLAINTEXT or SASL_SSL.",
    ),
    ConfigKey(
        "inter.broker.listener.name",
        str,
        None,
        "The listener brokers register as their own address (default: the only listener, or PLAINTEXT).",
    ),
    # -- security (raftlog/tls.py): internal services and TLS ---------------------------------
    ConfigKey(
        "controller.listener.names",
        list,
        [],
        "Listeners that carry the Raft and controller services besides inter.broker.listener.name.",
    ),
    ConfigKey("ssl.certificate.location", str, None, "PEM certificate chain of this node (SSL listeners)."),
    ConfigKey("ssl.key.location", str, None, "PEM private key of ssl.certificate.location."),
    ConfigKey("ssl.truststore.location", str, None, "PEM CA bundle that client and peer certificates must chain to."),
    ConfigKey(
        "ssl.client.auth",
        str,
        "none",
        "Client certificates on SSL client listeners: none, requested (Kafka listeners only) or required "
        "(internal listeners always require one).",
    ),
    ConfigKey(
        "ssl.principal.mapping.rules",
        str,
        DEFAULT_MAPPING_RULES,
        "Kafka's RULE:regex/replacement/[LU] list applied to a certificate's DN; the default takes the CN.",
    ),
    ConfigKey("grpc.reflection.enable", bool, False, "Serve gRPC server reflection on every listener."),
    # -- authorization (raftlog/authorizer/): ACLs in the metadata quorum -----------------------
    ConfigKey(
        "authorizer.class.name",
        str,
        "",
        "Turns ACL authorization on: org.apache.kafka.metadata.authorizer.StandardAuthorizer (or "
        "raftlog.authorizer.StandardAuthorizer); empty: off, every caller may do everything.",
    ),
    ConfigKey("super.users", str, "", "Principals allowed everything, semicolon-separated: User:admin;User:ops."),
    ConfigKey(
        "allow.everyone.if.no.acl.found",
        bool,
        False,
        "With authorization on: allow an operation on a resource no ACL binding names at all.",
    ),
    # -- authentication (raftlog/authentication.py, raftlog/scram.py) ---------------------------
    ConfigKey(
        "sasl.enabled.mechanisms",
        list,
        ["SCRAM-SHA-256", "SCRAM-SHA-512"],
        "SASL mechanisms SASL_* listeners offer: SCRAM-SHA-256, SCRAM-SHA-512 (gRPC and Kafka), PLAIN (Kafka only).",
    ),
    ConfigKey(
        "sasl.session.token.lifetime.ms",
        int,
        900_000,
        "How long a gRPC client's session token from a SCRAM login is good for (it logs in again before).",
        minimum=1000,
    ),
    # ------------------------------------------------------------------------------------------
    ConfigKey("log.dirs", list, None, "Directories for partition data, comma-separated."),
    ConfigKey("metadata.log.dir", str, None, "Directory for the Raft state and metadata (default: first of log.dirs)."),
    ConfigKey("metrics.port", int, 0, "Port of the Prometheus endpoint; 0 disables it."),
    ConfigKey("metrics.host", str, "127.0.0.1", "Address the Prometheus endpoint binds to."),
    ConfigKey("cluster.id", str, None, "Cluster id used by --format-if-empty when the data dir is not formatted."),
    ConfigKey("controller.quorum.election.timeout.ms", int, 500, "Raft election timeout (randomized up to 2x)."),
    # An idle three-node cluster used 0.19 cores with 50 ms heartbeats and 10 ms ticks (heartbeats,
    # their answers and the Ready rounds they cause were most of it), 0.13 with these; a leader
    # still sends five heartbeats per election timeout, and failover is bounded by that timeout.
    ConfigKey("controller.quorum.heartbeat.interval.ms", int, 100, "Raft leader heartbeat interval."),
    ConfigKey("controller.quorum.tick.ms", int, 20, "Resolution of the Raft timers."),
    ConfigKey("metadata.snapshot.interval.records", int, 10000, "Committed metadata records between snapshots."),
    ConfigKey("broker.heartbeat.interval.ms", int, 250, "How often a broker heartbeats to the controller."),
    ConfigKey("broker.session.timeout.ms", int, 2000, "A broker silent this long is fenced."),
    ConfigKey(
        "broker.clock.skew.max.ms",
        int,
        300_000,
        "A broker whose wall clock differs from the active controller's by more than this deletes "
        "nothing by time (retention.ms) until it agrees again.",
        False,
        1,
    ),
    ConfigKey("shutdown.timeout.ms", int, 5000, "Upper bound on a clean shutdown (leadership hand-off included)."),
    ConfigKey("num.partitions", int, 1, "Default partition count of new topics.", True, 1),
    ConfigKey("default.replication.factor", int, 3, "Default replication factor of new topics.", True, 1),
    ConfigKey("min.insync.replicas", int, 2, "Minimum ISR size for acks=all writes.", True, 1),
    ConfigKey("log.retention.hours", int, 168, "Default retention of partition data.", True, -1),
    ConfigKey("log.retention.ms", int, -1, "Default retention in ms; overrides hours when not -1.", True, -1),
    ConfigKey("log.retention.bytes", int, -1, "Default size bound of a partition; -1 is none.", True, -1),
    ConfigKey("log.segment.bytes", int, 1073741824, "Default segment size.", True, 14),
    ConfigKey("log.cleanup.policy", list, ["delete"], "Default cleanup policy: delete and/or compact.", True),
    ConfigKey("message.max.bytes", int, 1048588, "Largest record batch a broker accepts.", True, 0),
    ConfigKey(
        "log.open.files.max",
        int,
        LOG_OPEN_FILES_MAX,
        "Segment and index files the broker keeps open at once; the least recently used are closed "
        "and reopened on their next use (files with writes not yet fsynced stay open until their flush).",
        False,
        1,
    ),
    ConfigKey(
        "log.scrub.bytes.per.second",
        int,
        1048576,
        "Rate at which the broker re-checks the CRCs of sealed segments (0 disables the scrubber).",
        False,
        0,
    ),
    ConfigKey("replica.lag.time.max.ms", int, 10000, "A follower behind this long leaves the ISR.", True, 1),
    ConfigKey("unclean.leader.election.enable", bool, False, "Allow an out-of-sync replica to lead.", True),
    ConfigKey("auto.create.topics.enable", bool, False, "Create topics on first use.", True),
    # Consumer groups. Kafka's names; defaults sized for a three-node cluster and a join that is
    # noticed within a heartbeat (Kafka's are 50 partitions, 45 s session, 5 s heartbeat).
    ConfigKey("offsets.topic.num.partitions", int, 12, "Partitions of __consumer_offsets (at its creation).", False, 1),
    ConfigKey(
        "offsets.topic.replication.factor",
        int,
        3,
        "Replication factor of __consumer_offsets (capped at the live broker count at creation).",
        False,
        1,
    ),
    ConfigKey(
        "offsets.retention.minutes",
        int,
        10080,
        "Committed offsets of a group that has been empty this long are deleted.",
        False,
        1,
    ),
    ConfigKey(
        "offsets.retention.check.interval.ms",
        int,
        600000,
        "How often the coordinator looks for groups past offsets.retention.minutes.",
        False,
        1,
    ),
    ConfigKey(
        "group.consumer.session.timeout.ms",
        int,
        10000,
        "A group member silent this long leaves the group; its partitions move.",
        False,
        1,
    ),
    ConfigKey(
        "group.coordinator.append.linger.ms",
        int,
        2,
        "How long the group coordinator gathers writes to one offsets partition (offset commits,"
        " group changes) into one acks=all append while another append of it awaits replication"
        " (with none out a write goes at once); 0: only what arrives in one event-loop turn.",
        False,
        0,
    ),
    ConfigKey(
        "group.consumer.heartbeat.interval.ms",
        int,
        500,
        "How often members heartbeat (the coordinator tells them).",
        False,
        1,
    ),
    # Classic groups (JoinGroup/SyncGroup, raftlog/groups/classic.py): Kafka's names and defaults.
    ConfigKey(
        "group.initial.rebalance.delay.ms",
        int,
        3000,
        "A classic group's first rebalance waits this long (at most its rebalance timeout) for more members.",
        False,
        0,
    ),
    ConfigKey(
        "group.min.session.timeout.ms",
        int,
        6000,
        "The shortest session timeout a classic group member may ask for (INVALID_SESSION_TIMEOUT below).",
        False,
        1,
    ),
    ConfigKey(
        "group.max.session.timeout.ms",
        int,
        1800000,
        "The longest session timeout a classic group member may ask for (INVALID_SESSION_TIMEOUT above).",
        False,
        1,
    ),
    # -- leader balance (Kafka's names and defaults; raftlog/controller/leader_balance.py) ----------
    ConfigKey(
        "auto.leader.rebalance.enable",
        bool,
        True,
        "The active controller moves leaderships back to preferred replicas by itself.",
    ),
    ConfigKey(
        "leader.imbalance.per.broker.percentage",
        int,
        10,
        "A broker not leading more than this percentage of the partitions it is preferred for gets them back.",
        False,
        0,
    ),
    # -- replication throttles (Kafka's names and default: unlimited). The broker's byte rate for
    # the replicas its topics list in leader/follower.replication.throttled.replicas, while they
    # are out of sync; set and cleared by `partitions reassign --execute/--verify --throttle`. ------
    ConfigKey(
        "leader.replication.throttled.rate",
        int,
        REPLICATION_THROTTLE_UNLIMITED,
        "Bytes per second this broker, as leader, sends to its throttled out-of-sync followers in all.",
        True,
        1,
    ),
    ConfigKey(
        "follower.replication.throttled.rate",
        int,
        REPLICATION_THROTTLE_UNLIMITED,
        "Bytes per second this broker, as follower, fetches for its throttled out-of-sync replicas in all.",
        True,
        1,
    ),
    # -- Kafka broker defaults of topic configs and replica fetching (Kafka's names and meaning; the
    # defaults are raftlog's own where they differ, e.g. every write fsynced before it counts) ------
    ConfigKey(
        "log.flush.interval.messages",
        int,
        1,
        "Default flush.messages: records appended between fsyncs (1: every write is fsynced before acks).",
        True,
        1,
    ),
    ConfigKey(
        "log.flush.interval.ms", int, 0, "Default flush.ms: the longest a write waits unflushed (0: none).", True, 0
    ),
    ConfigKey(
        "compression.type",
        str,
        "producer",
        "Default compression.type of topics (producer: keep the producer's).",
        True,
    ),
    ConfigKey("log.roll.ms", int, 604800000, "Default segment.ms: a segment older than this rolls.", True, 1),
    ConfigKey(
        "log.index.interval.bytes", int, 4096, "Default index.interval.bytes: bytes between index entries.", True, 0
    ),
    ConfigKey(
        "log.message.timestamp.type",
        str,
        "CreateTime",
        "Default message.timestamp.type: CreateTime or LogAppendTime.",
        True,
    ),
    ConfigKey(
        "log.cleaner.delete.retention.ms",
        int,
        86400000,
        "Default delete.retention.ms: how long compaction keeps tombstones.",
        True,
        0,
    ),
    ConfigKey(
        "log.cleaner.min.cleanable.ratio",
        float,
        0.5,
        "Default min.cleanable.dirty.ratio: the dirty share of a log before it is compacted.",
        True,
    ),
    ConfigKey(
        "replica.fetch.max.bytes",
        int,
        REPLICA_FETCH_MAX_BYTES,
        "Bytes a follower's fetch asks for (a follower far behind catches up in steps this size).",
        False,
        1,
    ),
    ConfigKey(
        "replica.fetch.wait.max.ms",
        int,
        REPLICA_FETCH_MAX_WAIT_MS,
        "The longest a follower's fetch waits at the leader for new data.",
        False,
        0,
    ),
    ConfigKey(
        "leader.imbalance.check.interval.seconds",
        int,
        300,
        "How often the active controller checks the leader balance.",
        False,
        1,
    ),
]

# ---- Kafka protocol listener (raftlog/kafka/) -------------------------------------------------
# Kept apart from the gRPC listeners: these sockets speak Kafka's binary protocol. A plain
# host:port is one listener named KAFKA; NAME://host:port names it (names and ports must differ
# from the gRPC listeners'). Brokers register the advertised addresses under these names, so a
# Kafka Metadata answer gives every broker's Kafka address.
KAFKA_DEFAULT_LISTENER_NAME = "KAFKA"
_KEYS += [
    ConfigKey(
        "kafka.listeners",
        str,
        None,
        "Where the node speaks Kafka's protocol: host:port (e.g. 127.0.0.1:9092) or NAME://host:port,...; "
        "unset: no Kafka listener.",
    ),
    ConfigKey(
        "kafka.advertised.listeners",
        str,
        None,
        "Kafka addresses given to clients in Metadata, per Kafka listener name (default: kafka.listeners).",
    ),
]


def _kafka_listener_text(text: str) -> str:
    return ",".join(
        part if "://" in part else f"{KAFKA_DEFAULT_LISTENER_NAME}://{part.strip()}"
        for part in text.split(",")
        if part.strip()
    )


def resolve_kafka_listeners(values: Mapping[str, Any], grpc: list[Listener]) -> tuple[list[Listener], list[Listener]]:
    """The Kafka listeners bound, and the address advertised for each (same order)."""
    if values["kafka.listeners"] is None:
        if values["kafka.advertised.listeners"] is not None:
            raise ConfigError("kafka.advertised.listeners is set but kafka.listeners is not")
        return [], []
    bound = parse_listeners(_kafka_listener_text(values["kafka.listeners"]), "kafka.listeners")
    for listener in bound:
        if any(g.name == listener.name for g in grpc):
            raise ConfigError(f"kafka.listeners: {listener.name} is also the name of a gRPC listener")
        if any(g.port == listener.port and listener.port != 0 for g in grpc):
            raise ConfigError(f"kafka.listeners: port {listener.port} is also a gRPC listener's")
    advertised = {listener.name: listener for listener in bound}
    if values["kafka.advertised.listeners"] is not None:
        text = _kafka_listener_text(values["kafka.advertised.listeners"])
        for listener in parse_listeners(text, "kafka.advertised.listeners"):
            if listener.name not in advertised:
                raise ConfigError(f"kafka.advertised.listeners: {listener.name} is not one of kafka.listeners")
            advertised[listener.name] = listener
    for listener in advertised.values():
        if listener.host in _WILDCARD_HOSTS:
            raise ConfigError(
                f"kafka.advertised.listeners: {listener.name} would advertise {listener.host}; set its address"
            )
    return bound, [advertised[listener.name] for listener in bound]


def resolve_kafka_security(values: Mapping[str, Any], kafka_listeners: list[Listener]) -> dict[str, str]:
    """Kafka listener name -> PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, from
    listener.security.protocol.map as for the gRPC listeners (`KAFKA:SASL_SSL`). A Kafka listener
    without an entry is PLAINTEXT, or the protocol it is named after (Kafka's default map names each
    protocol after itself). An SSL or SASL_SSL one needs the node's certificate and key; one that
    asks for client certificates (ssl.client.auth requested or required) needs the truststore; a
    SASL_* one needs a mechanism in sasl.enabled.mechanisms (PLAIN or SCRAM-SHA-256/512)."""
    protocols = _protocol_map(values)
    resolved: dict[str, str] = {}
    for listener in kafka_listeners:
        default = listener.name if listener.name in SECURITY_PROTOCOLS else PLAINTEXT
        protocol = protocols.get(listener.name, default)
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"Kafka listener {listener.name}: security protocol {protocol} is not supported "
                f"({' or '.join(SECURITY_PROTOCOLS)})"
            )
        resolved[listener.name] = protocol
    sasl_listeners = [name for name, protocol in resolved.items() if protocol in SASL_PROTOCOLS]
    if sasl_listeners and not [m for m in values["sasl.enabled.mechanisms"] if m.strip()]:
        raise ConfigError(f"Kafka listener {sasl_listeners[0]} is SASL: sasl.enabled.mechanisms names none")
    ssl_listeners = [name for name, protocol in resolved.items() if protocol in TLS_PROTOCOLS]
    if ssl_listeners:
        if values["ssl.client.auth"] not in CLIENT_AUTH_MODES:
            raise ConfigError(
                f"ssl.client.auth: {values['ssl.client.auth']!r} is not one of {', '.join(CLIENT_AUTH_MODES)}"
            )
        for key in ("ssl.certificate.location", "ssl.key.location"):
            if values[key] is None:
                raise ConfigError(
                    f"Kafka listener {ssl_listeners[0]} is {resolved[ssl_listeners[0]]}: {key} is required"
                )
        if values["ssl.client.auth"] != "none" and values["ssl.truststore.location"] is None:
            raise ConfigError(
                f"ssl.client.auth={values['ssl.client.auth']} needs ssl.truststore.location (the CA of client certificates)"
            )
    return resolved


# ---- end of the Kafka protocol listener's keys -------------------------------------------------

SCHEMA: dict[str, ConfigKey] = {key.name: key for key in _KEYS}


def _parse_value(key: ConfigKey, raw: Any) -> Any:
    """Turns a TOML value or a string from the environment/flags into the key's type."""
    try:
        if key.kind is list:
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return [str(item).strip() for item in items if str(item).strip()]
        if key.kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("true", "false"):
                raise ValueError(raw)
            return text == "true"
        if key.kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if key.kind is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key.name}: {raw!r} is not a valid {key.kind.__name__}") from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = value
    return flat


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return _flatten(tomllib.load(f))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _env_name(key_name: str) -> str:
    return ENV_PREFIX + key_name.upper().replace(".", "_").replace("-", "_")


def read_env(environ: Mapping[str, str]) -> dict[str, str]:
    """RAFTLOG_* variables that name a known key (or a Kafka setting of the table at the end of
    this module); other RAFTLOG_* variables belong to the CLI."""
    names = {**{key.env_name: key.name for key in _KEYS}, **{_env_name(name): name for name in _KAFKA_NAMES}}
    return {names[name]: value for name, value in environ.items() if name in names}


def parse_set_flags(flags: Iterable[str]) -> dict[str, str]:
    values = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {flag!r}: expected key=value")
        values[name.strip()] = value
    return values


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, what: str) -> Address:
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{what}: {text!r} is not host:port")
    if not _valid_host(host):
        raise ConfigError(f"{what}: {host!r} is not a valid host name or IP address")
    return Address(host, int(port_text))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.split(".")
        return all(label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels)


@dataclass(frozen=True)
class Listener:
    """One named listener: a gRPC server bound to (host, port), or the address advertised for it."""

    name: str
    host: str
    port: int

    @property
    def address(self) -> Address:
        return Address(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


DEFAULT_LISTENER_NAME = "PLAINTEXT"  # the name of a listener written as plain host:port, as in Kafka
PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL = "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
SECURITY_PROTOCOLS = (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)  # Kafka's names
TLS_PROTOCOLS = (SSL, SASL_SSL)  # listeners whose transport is TLS
SASL_PROTOCOLS = (SASL_PLAINTEXT, SASL_SSL)  # listeners that authenticate users by SASL
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
GRPC_SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")  # gRPC logins are SCRAM exchanges only
CLIENT_AUTH_MODES = ("none", "requested", "required")
# Why a gRPC listener cannot have ssl.client.auth=requested (checked with grpcio 1.85,
# tests/unit/test_tls.py): its server credentials take one flag, require_client_auth. With it false
# the server sends no certificate request even when root certificates are set, so a client's
# certificate is never sent, verified or seen (auth_context has none); with it true a client
# without one is refused. "Ask, verify if given, admit without" cannot be expressed.
GRPC_REQUESTED_UNSUPPORTED = (
    "grpcio's server offers only require_client_auth=False (no client certificate is asked for, even "
    "with root certificates set) or True (one is required); it cannot ask for an optional one"
)
_WILDCARD_HOSTS = ("0.0.0.0", "::")


def parse_listeners(text: str, what: str) -> list[Listener]:
    """``host:port`` (one listener named PLAINTEXT) or ``NAME://host:port,NAME2://host:port``."""
    listeners: list[Listener] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, address_text = entry.partition("://")
        if not sep:
            name, address_text = DEFAULT_LISTENER_NAME, entry
        name = name.strip().upper()
        if not name or not name.replace("_", "").isalnum():
            raise ConfigError(f"{what}: {entry!r} is not NAME://host:port")
        if any(listener.name == name for listener in listeners):
            raise ConfigError(f"{what}: listener name {name} appears twice")
        address = parse_address(address_text, f"{what}[{name}]")
        listeners.append(Listener(name, address.host, address.port))
    if not listeners:
        raise ConfigError(f"{what} is empty")
    return listeners


def _resolve_listeners(values: Mapping[str, Any]) -> tuple[list[Listener], list[Listener], str]:
    """Bound listeners, the advertised address of each (same order) and the inter-broker listener name."""
    bound = parse_listeners(values["listeners"], "listeners")
    names = [listener.name for listener in bound]
    ports = [listener.port for listener in bound]
    duplicate_ports = sorted({port for port in ports if ports.count(port) > 1})
    if duplicate_ports:
        raise ConfigError(f"listeners: port {duplicate_ports[0]} is used by more than one listener")
    protocols = _protocol_map(values)
    for name in names:
        if name not in protocols:
            raise ConfigError(f"listener.security.protocol.map has no entry for listener {name}")
        if protocols[name] not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"listener {name}: security protocol {protocols[name]} is not supported "
                f"({' or '.join(SECURITY_PROTOCOLS)})"
            )
    advertised = {listener.name: listener for listener in bound}
    if values["advertised.listeners"] is not None:
        for listener in parse_listeners(values["advertised.listeners"], "advertised.listeners"):
            if listener.name not in advertised:
                raise ConfigError(f"advertised.listeners: {listener.name} is not one of listeners ({', '.join(names)})")
            advertised[listener.name] = listener
    for listener in advertised.values():
        if listener.host in _WILDCARD_HOSTS:
            raise ConfigError(
                f"advertised.listeners: listener {listener.name} would advertise {listener.host}, "
                "which no client can connect to; set its address in advertised.listeners"
            )
    inter_broker = values["inter.broker.listener.name"]
    if inter_broker is None:
        if len(names) == 1:
            inter_broker = names[0]
        elif DEFAULT_LISTENER_NAME in names:
            inter_broker = DEFAULT_LISTENER_NAME
        else:
            raise ConfigError(
                "inter.broker.listener.name is required when there are several listeners "
                f"({', '.join(names)}) and none is {DEFAULT_LISTENER_NAME}"
            )
    inter_broker = inter_broker.strip().upper()
    if inter_broker not in names:
        raise ConfigError(f"inter.broker.listener.name {inter_broker} is not one of listeners ({', '.join(names)})")
    _check_security(values, names, protocols, inter_broker)
    return bound, [advertised[name] for name in names], inter_broker


def _protocol_map(values: Mapping[str, Any]) -> dict[str, str]:
    protocols: dict[str, str] = {}
    for entry in values["listener.security.protocol.map"]:
        name, sep, protocol = entry.partition(":")
        if not sep or not name.strip() or not protocol.strip():
            raise ConfigError(f"listener.security.protocol.map: {entry!r} is not NAME:PROTOCOL")
        protocols[name.strip().upper()] = protocol.strip().upper()
    return protocols


@dataclass(frozen=True)
class ListenerSecurity:
    """Which listeners carry the internal services (Raft, controller, replication) and how each is
    secured. Internal listeners carry the client services too (as Kafka's inter-broker listener
    does), so a single-listener cluster works; client listeners carry only client services."""

    protocols: dict[str, str]  # listener name -> PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    internal: frozenset[str]

    @property
    def peer_protocol(self) -> str:
        """How this node connects to its peers (all internal listeners share one protocol)."""
        return next(self.protocols[name] for name in sorted(self.internal))


def _internal_listeners(values: Mapping[str, Any], inter_broker: str) -> frozenset[str]:
    return frozenset([inter_broker, *(name.strip().upper() for name in values["controller.listener.names"])])


def _check_security(values: Mapping[str, Any], names: list[str], protocols: dict[str, str], inter_broker: str) -> None:
    internal = _internal_listeners(values, inter_broker)
    unknown = sorted(internal - set(names))
    if unknown:
        raise ConfigError(f"controller.listener.names: {unknown[0]} is not one of listeners ({', '.join(names)})")
    internal_protocols = {protocols[name] for name in internal}
    sasl_internal = sorted(name for name in internal if protocols[name] in SASL_PROTOCOLS)
    if sasl_internal:
        raise ConfigError(
            f"listener {sasl_internal[0]} carries Raft and replication traffic, which nodes authenticate "
            "with their certificates: make it SSL (or PLAINTEXT), and SASL_* a client listener"
        )
    mechanisms = [m.strip().upper() for m in values["sasl.enabled.mechanisms"]]
    unknown_mechanisms = [m for m in mechanisms if m not in SASL_MECHANISMS]
    if unknown_mechanisms:
        raise ConfigError(
            f"sasl.enabled.mechanisms: {unknown_mechanisms[0]} is not one of {', '.join(SASL_MECHANISMS)}"
        )
    if any(protocols[name] in SASL_PROTOCOLS for name in names) and not set(mechanisms) & set(GRPC_SASL_MECHANISMS):
        raise ConfigError("a SASL_* gRPC listener needs SCRAM-SHA-256 or SCRAM-SHA-512 in sasl.enabled.mechanisms")
    if len(internal_protocols) > 1:
        raise ConfigError(
            f"internal listeners {', '.join(sorted(internal))} must share one security protocol "
            "(peers connect to each other with one)"
        )
    ssl_listeners = [name for name in names if protocols[name] in TLS_PROTOCOLS]
    if not ssl_listeners:
        return
    for key in ("ssl.certificate.location", "ssl.key.location"):
        if values[key] is None:
            raise ConfigError(f"listener {ssl_listeners[0]} is SSL: {key} is required")
    if values["ssl.client.auth"] not in CLIENT_AUTH_MODES:
        raise ConfigError(f"ssl.client.auth: {values['ssl.client.auth']!r} is not none, requested or required")
    grpc_client_ssl = [name for name in ssl_listeners if name not in internal]
    if values["ssl.client.auth"] == "requested" and grpc_client_ssl:
        # Refused rather than served as none or required (the Kafka listener, asyncio's ssl, can
        # ask without requiring).
        raise ConfigError(
            f"ssl.client.auth=requested is not supported on gRPC SSL client listener {grpc_client_ssl[0]}: "
            f"{GRPC_REQUESTED_UNSUPPORTED}; use none or required (requested works on Kafka listeners only)"
        )
    needs_truststore = values["ssl.client.auth"] != "none" or SSL in internal_protocols
    if needs_truststore and values["ssl.truststore.location"] is None:
        raise ConfigError("ssl.truststore.location is required: internal SSL listeners verify peer certificates")
    try:
        PrincipalMapper(values["ssl.principal.mapping.rules"])
    except PrincipalRuleError as exc:
        raise ConfigError(str(exc)) from None


def parse_voters(entries: list[str]) -> dict[int, Address]:
    voters: dict[int, Address] = {}
    for entry in entries:
        id_text, sep, address = entry.partition("@")
        if not sep or not id_text.strip().isdigit():
            raise ConfigError(f"controller.quorum.voters: {entry!r} is not id@host:port")
        voter_id = int(id_text)
        if voter_id in voters:
            raise ConfigError(f"controller.quorum.voters: voter id {voter_id} appears twice")
        voters[voter_id] = parse_address(address, f"controller.quorum.voters[{voter_id}]")
    if not voters:
        raise ConfigError("controller.quorum.voters is empty")
    return voters


class NodeConfig:
    """A validated node configuration; ``values`` maps every schema key to its value."""

    def __init__(self, values: Mapping[str, Any], explicit: Iterable[str] = (), warnings: Iterable[str] = ()):
        self.values = dict(values)
        self.warnings = list(warnings)  # one line per Kafka setting accepted without a meaning here
        self.explicit = frozenset(explicit)  # keys set by file, environment or flag (not defaults)
        self.node_id: int = values["node.id"]
        self.roles: list[str] = values["process.roles"]
        self.voters: dict[int, Address] = parse_voters(values["controller.quorum.voters"])
        # Named listeners (Kafka's): one gRPC server each; a client is answered with the addresses
        # of the listener it came in on. Brokers register the inter-broker listener's advertised
        # address as their own (peers themselves reach each other at controller.quorum.voters).
        self.listeners, self.advertised_listeners, self.inter_broker_listener = _resolve_listeners(values)
        self.security = ListenerSecurity(
            {
                name: protocol
                for name, protocol in _protocol_map(values).items()
                if name in {b.name for b in self.listeners}
            },
            _internal_listeners(values, self.inter_broker_listener),
        )
        inter_broker = next(bound for bound in self.listeners if bound.name == self.inter_broker_listener)
        self.listener: Address = inter_broker.address
        self.advertised: Address = self.advertised_listener(self.inter_broker_listener).address
        self.kafka_listeners, self.kafka_advertised_listeners = resolve_kafka_listeners(values, self.listeners)
        self.kafka_security: dict[str, str] = resolve_kafka_security(values, self.kafka_listeners)  # name -> protocol
        self.sasl_mechanisms: tuple[str, ...] = tuple(m.strip().upper() for m in values["sasl.enabled.mechanisms"])
        self.super_users: frozenset[str] = parse_super_users(values["super.users"])
        self.log_dirs: list[Path] = [Path(d) for d in values["log.dirs"]]
        self.metadata_dir: Path = Path(values["metadata.log.dir"])

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def advertised_listener(self, name: str) -> Listener:
        for listener in self.advertised_listeners:
            if listener.name == name:
                return listener
        raise KeyError(name)

    @property
    def data_dirs(self) -> list[Path]:
        """Every directory that must be stamped with the cluster and node id."""
        dirs = list(self.log_dirs)
        return dirs if self.metadata_dir in dirs else dirs + [self.metadata_dir]


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Iterable[str] = (),
) -> NodeConfig:
    """Merges file < environment < --set flags, fills defaults and validates."""
    layers = [
        read_toml(path) if path else {},
        read_env(os.environ if environ is None else environ),
        parse_set_flags(overrides),
    ]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    raw, warnings = translate_kafka_settings(merged)
    return NodeConfig(_resolve(raw), explicit=raw, warnings=warnings)


def _resolve(raw: Mapping[str, Any]) -> dict[str, Any]:
    values = {name: _parse_value(SCHEMA[name], value) for name, value in raw.items()}
    for key in _KEYS:
        values.setdefault(key.name, key.default)
    for required in ("node.id", "controller.quorum.voters", "log.dirs"):
        if values[required] in (None, []):
            raise ConfigError(f"{required} is required")
    _check_roles(values["process.roles"])
    voters = parse_voters(values["controller.quorum.voters"])
    node_id = values["node.id"]
    if node_id < 0:
        raise ConfigError(f"node.id {node_id} is not a node id: ids are >= 0 (-1 means no node)")
    # A controller outside controller.quorum.voters joins as an observer until `quorum add-controller`
    # makes it a voter (KIP-853); once the log holds a configuration, that configuration wins.
    if "controller" not in values["process.roles"] and node_id in voters:
        raise ConfigError(
            f"node.id {node_id} is one of controller.quorum.voters but process.roles is broker: a broker-only "
            "node follows the metadata log without voting; list only the controllers as voters"
        )
    if values["listeners"] is None:
        if node_id not in voters:
            raise ConfigError(
                f"listeners is required: node {node_id} is not a voter, so controller.quorum.voters gives no address for it"
            )
        values["listeners"] = str(voters[node_id])
    bound, _, inter_broker = _resolve_listeners(values)  # here, so that every contradiction fails before start
    resolve_kafka_security(values, resolve_kafka_listeners(values, bound)[0])
    internal = _internal_listeners(values, inter_broker)
    client_ports = {b.port: b.name for b in bound if b.name not in internal}
    if node_id in voters and voters[node_id].port in client_ports:
        # Peers reach this node at its voter address; a client listener there would not serve them.
        # (A port that no listener binds may be forwarded, as in containers: not checked.)
        raise ConfigError(
            f"controller.quorum.voters gives node {node_id} port {voters[node_id].port}, the port of client "
            f"listener {client_ports[voters[node_id].port]}; it must be an internal listener's "
            f"({', '.join(sorted(internal))})"
        )
    if values["metadata.log.dir"] is None:
        values["metadata.log.dir"] = values["log.dirs"][0]
    if values["authorizer.class.name"] not in AUTHORIZER_CLASS_NAMES:
        raise ConfigError(
            f"authorizer.class.name: {values['authorizer.class.name']!r} is not an authorizer raftlog has "
            f"({' or '.join(sorted(n for n in AUTHORIZER_CLASS_NAMES if n))}; empty for none)"
        )
    _check_ranges(values)
    return values


def _check_roles(roles: list[str]) -> None:
    unknown = sorted(set(roles) - {"broker", "controller"})
    if unknown or not roles:
        raise ConfigError(f"process.roles: {','.join(roles) or '(empty)'} is not a subset of broker,controller")
    if len(set(roles)) != len(roles):
        raise ConfigError(f"process.roles: {','.join(roles)} names a role twice")


_POSITIVE = [
    "controller.quorum.election.timeout.ms",
    "controller.quorum.heartbeat.interval.ms",
    "controller.quorum.tick.ms",
    "metadata.snapshot.interval.records",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
    "shutdown.timeout.ms",
]


def _check_ranges(values: Mapping[str, Any]) -> None:
    checks: list[tuple[bool, Callable[[], str]]] = [
        (values["node.id"] >= 0, lambda: f"node.id must be >= 0, got {values['node.id']}"),
        (
            values["controller.quorum.heartbeat.interval.ms"] < values["controller.quorum.election.timeout.ms"],
            lambda: "controller.quorum.heartbeat.interval.ms must be below controller.quorum.election.timeout.ms",
        ),
        (
            values["broker.heartbeat.interval.ms"] < values["broker.session.timeout.ms"],
            lambda: "broker.heartbeat.interval.ms must be below broker.session.timeout.ms",
        ),
        (0 <= values["metrics.port"] < 65536, lambda: f"metrics.port {values['metrics.port']} is out of range"),
        (
            values["replica.fetch.max.bytes"] <= MAX_MESSAGE_BYTES // 2,
            lambda: f"replica.fetch.max.bytes must be <= {MAX_MESSAGE_BYTES // 2} (half the gRPC message limit)",
        ),
        (
            values["replica.fetch.wait.max.ms"] < REPLICA_FETCH_TIMEOUT_S * 1000,
            lambda: f"replica.fetch.wait.max.ms must be below the fetch deadline, {REPLICA_FETCH_TIMEOUT_S * 1000:.0f}",
        ),
        (
            0 <= values["log.cleaner.min.cleanable.ratio"] <= 1,
            lambda: "log.cleaner.min.cleanable.ratio must be 0..1",
        ),
        (
            values["leader.imbalance.per.broker.percentage"] <= 100,
            lambda: "leader.imbalance.per.broker.percentage must be <= 100",
        ),
    ]

    def positive(name: str) -> Callable[[], str]:
        return lambda: f"{name} must be > 0, got {values[name]}"

    def at_least(key: ConfigKey) -> Callable[[], str]:
        return lambda: f"{key.name} must be >= {key.minimum}, got {values[key.name]}"

    for topic_key in TOPIC_SCHEMA.values():
        if topic_key.broker_key is not None:
            _check_as_topic_default(topic_key.broker_key, values[topic_key.broker_key])
    checks += [(values[name] > 0, positive(name)) for name in _POSITIVE]
    checks += [(values[key.name] >= key.minimum, at_least(key)) for key in _KEYS if key.minimum is not None]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message())


_TOPIC_KEY_OF = {key.broker_key: key.name for key in TOPIC_SCHEMA.values() if key.broker_key}


def _check_as_topic_default(name: str, value: Any) -> None:
    """A broker key that is a topic config's default passes that topic config's check."""
    topic_key = _TOPIC_KEY_OF.get(name)
    if topic_key is not None:
        try:
            validate_topic_config(topic_key, format_value(value))
        except TopicConfigError as exc:
            raise ConfigError(f"{name} (the default of topic config {exc})") from None


def parse_dynamic_value(name: str, raw: str) -> str:
    """Validates a dynamic broker config value; returns its canonical text form."""
    key = SCHEMA.get(name)
    if key is None or not key.dynamic:
        dynamic = ", ".join(sorted(k.name for k in _KEYS if k.dynamic))
        raise ConfigError(f"{name!r} is not a dynamic broker config (dynamic: {dynamic})")
    value = _parse_value(key, raw)
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{name} must be >= {key.minimum}, got {value}")
    if name == "log.cleanup.policy" and (not value or set(value) - {"delete", "compact"}):
        raise ConfigError(f"log.cleanup.policy: {raw!r} is not a subset of delete,compact")
    _check_as_topic_default(name, value)
    return format_value(value)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


# -- Kafka broker settings that are not raftlog keys of the same name -------------------------------
#
# The one table of them: an operator's Kafka server.properties (or a tuning guide) carries over.
# A setting with a meaning here is another name of a raftlog key (`alias`, with the value converted
# where the unit differs); one without is accepted with a one-line warning that says why it has
# none (`ignored`), never silently. A name in neither table nor the schema is an error. Kafka's
# settings that are the same here are schema keys under their own name (num.partitions,
# message.max.bytes, log.flush.interval.messages, replica.fetch.max.bytes, ...).


@dataclass(frozen=True)
class KafkaAlias:
    name: str
    target: str  # the raftlog key it sets
    scale: int = 1  # the target's value is the value times this (a unit change)
    dynamic: bool = False  # Kafka lets `configs alter --entity-type brokers` change it


@dataclass(frozen=True)
class KafkaIgnored:
    name: str
    why: str
    dynamic: bool = False  # accepted by `configs alter --entity-type brokers` (as Kafka does), and stored


_ONE_LOOP = "raftlog serves every connection on one asyncio loop per node"
_KAFKA_ALIASES = [
    KafkaAlias("broker.id", "node.id"),
    KafkaAlias("log.dir", "log.dirs"),
    KafkaAlias("log.retention.minutes", "log.retention.ms", 60_000, True),
    KafkaAlias("log.roll.hours", "log.roll.ms", 3_600_000, True),
]
_KAFKA_IGNORED = [
    KafkaIgnored("num.network.threads", _ONE_LOOP, True),
    KafkaIgnored("num.io.threads", f"{_ONE_LOOP}; disk writes and fsyncs go to a worker thread", True),
    KafkaIgnored("background.threads", f"{_ONE_LOOP}; background work runs as tasks on it", True),
    KafkaIgnored("queued.max.requests", "there is no request queue: gRPC hands every call to the node's loop"),
    KafkaIgnored(
        "num.replica.fetchers", "each broker runs one fetcher per leader broker, all partitions in one call", True
    ),
    KafkaIgnored("log.cleaner.threads", "compaction runs as one task per node", True),
    KafkaIgnored("log.cleaner.enable", "compaction always runs for cleanup.policy=compact topics"),
    KafkaIgnored("log.cleaner.dedupe.buffer.size", "compaction keeps the latest offset per key in memory, unbounded"),
    KafkaIgnored("log.cleaner.io.max.bytes.per.second", "compaction is not throttled", True),
    KafkaIgnored("num.recovery.threads.per.data.dir", "logs are recovered one at a time on a worker thread", True),
    KafkaIgnored("log.flush.scheduler.interval.ms", "every partition schedules its own flush by flush.ms"),
    KafkaIgnored(
        "log.flush.offset.checkpoint.interval.ms", "the recovery-point checkpoint interval is fixed at 10 s (limits.py)"
    ),
    KafkaIgnored("log.retention.check.interval.ms", "retention is checked by each partition's maintenance loop"),
    KafkaIgnored(
        "socket.send.buffer.bytes", "gRPC (HTTP/2) sizes its own socket buffers and flow-control windows", True
    ),
    KafkaIgnored(
        "socket.receive.buffer.bytes", "gRPC (HTTP/2) sizes its own socket buffers and flow-control windows", True
    ),
    KafkaIgnored(
        "socket.request.max.bytes", f"every request is bounded by the {MAX_MESSAGE_BYTES} byte gRPC message limit"
    ),
    KafkaIgnored("socket.listen.backlog.size", "gRPC sets the listen backlog"),
    KafkaIgnored(
        "replica.socket.timeout.ms",
        f"a replica fetch's deadline is fixed at {REPLICA_FETCH_TIMEOUT_S:.0f} s (limits.py)",
    ),
    KafkaIgnored("replica.socket.receive.buffer.bytes", "gRPC (HTTP/2) sizes its own socket buffers"),
    KafkaIgnored("replica.fetch.min.bytes", "a follower's fetch answers as soon as any data is there"),
    KafkaIgnored("replica.fetch.backoff.ms", "a failed partition fetch backs off 100 ms (limits.py)"),
    KafkaIgnored(
        "replica.high.watermark.checkpoint.interval.ms",
        "the advisory high-watermark checkpoint is rewritten at most every 0.5 s (replication/log_adapter.py)",
    ),
    KafkaIgnored("connections.max.idle.ms", "gRPC keeps connections open with keepalive pings"),
    KafkaIgnored("max.connections", "connections are not limited", True),
    KafkaIgnored("max.connections.per.ip", "connections are not limited", True),
    KafkaIgnored("request.timeout.ms", "a client setting; every call carries its own gRPC deadline"),
    KafkaIgnored(
        "zookeeper.connect", "raftlog has no ZooKeeper: metadata lives in its Raft quorum (controller.quorum.voters)"
    ),
    KafkaIgnored("zookeeper.connection.timeout.ms", "raftlog has no ZooKeeper"),
    KafkaIgnored("zookeeper.session.timeout.ms", "raftlog has no ZooKeeper"),
    KafkaIgnored("controller.quorum.fetch.timeout.ms", "followers time out by controller.quorum.election.timeout.ms"),
    KafkaIgnored("inter.broker.protocol.version", "one protocol version: raftlog.v1"),
    KafkaIgnored("log.message.format.version", "one format: RecordBatch v2"),
    KafkaIgnored("delete.topic.enable", "topics can always be deleted"),
    KafkaIgnored("transaction.state.log.replication.factor", "transactions are not supported"),
    KafkaIgnored("transaction.state.log.min.isr", "transactions are not supported"),
    KafkaIgnored("transaction.state.log.num.partitions", "transactions are not supported"),
    KafkaIgnored("broker.rack", "rack-aware placement is not built"),
    KafkaIgnored("log.preallocate", "segments are not preallocated"),
]
KAFKA_ALIASES: dict[str, KafkaAlias] = {alias.name: alias for alias in _KAFKA_ALIASES}
KAFKA_IGNORED: dict[str, KafkaIgnored] = {ignored.name: ignored for ignored in _KAFKA_IGNORED}
_KAFKA_NAMES = frozenset(KAFKA_ALIASES) | frozenset(KAFKA_IGNORED)
assert not (set(KAFKA_ALIASES) | set(KAFKA_IGNORED)) & set(SCHEMA), "a Kafka name in the table shadows a schema key"
assert not set(KAFKA_ALIASES) & set(KAFKA_IGNORED), "a Kafka name is either mapped or ignored"
assert all(alias.target in SCHEMA for alias in _KAFKA_ALIASES), "an alias names a key the schema lacks"
assert all(SCHEMA[alias.target].dynamic for alias in _KAFKA_ALIASES if alias.dynamic), "a dynamic alias of a static key"


def ignored_warning(name: str) -> str:
    return f"{name}: ignored: {KAFKA_IGNORED[name].why}"


def _alias_value(alias: KafkaAlias, raw: Any) -> Any:
    if alias.scale == 1:
        return raw
    try:
        return int(raw) * alias.scale
    except (TypeError, ValueError):
        raise ConfigError(f"{alias.name}: {raw!r} is not a valid int") from None


def translate_kafka_settings(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Merged settings by name -> raftlog keys and values, and one warning per ignored Kafka setting.

    An alias never overrides its target when both are given (Kafka's precedence: log.retention.ms
    over log.retention.minutes, log.roll.ms over log.roll.hours, node.id over broker.id)."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for name, value in raw.items():
        if name in SCHEMA:
            values[name] = value
        elif name in KAFKA_IGNORED:
            warnings.append(ignored_warning(name))
        elif name not in KAFKA_ALIASES:
            raise ConfigError(f"unknown configuration key {name!r}")
    for name, value in raw.items():
        alias = KAFKA_ALIASES.get(name)
        if alias is not None and alias.target not in values:
            values[alias.target] = _alias_value(alias, value)
    return values, warnings


def resolve_dynamic_setting(name: str, raw: str) -> tuple[str, str, str | None]:
    """A dynamic broker setting as `configs alter --entity-type brokers` gives it -> the name it is
    stored under, its canonical value, and a warning when it has no meaning here."""
    alias = KAFKA_ALIASES.get(name)
    if alias is not None:
        if not alias.dynamic:
            raise ConfigError(f"{name!r} ({alias.target} here) is not a dynamic broker config")
        return alias.target, parse_dynamic_value(alias.target, str(_alias_value(alias, raw))), None
    ignored = KAFKA_IGNORED.get(name)
    if ignored is not None:
        if not ignored.dynamic:
            raise ConfigError(f"{name!r} is not a dynamic broker config in Kafka ({ignored_warning(name)})")
        return name, raw.strip(), ignored_warning(name)
    return name, parse_dynamic_value(name, raw), None
