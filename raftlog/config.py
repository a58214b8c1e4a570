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

ENV_PREFIX = "RAFTLOG_"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line meant for an operator."""


@dataclass(frozen=True)
class ConfigKey:
    name: str
    kind: type  # int, str, bool or list (comma-separated strings)
    default: Any
    doc: str
    dynamic: bool = False  # may be changed at run time with `raftlog configs alter --entity-type brokers`
    minimum: int | None = None

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.name.upper().replace(".", "_").replace("-", "_")


_KEYS = [
    ConfigKey("node.id", int, None, "This node's id; must be one of controller.quorum.voters."),
    ConfigKey("process.roles", list, ["broker", "controller"], "Roles of this node: broker and/or controller."),
    ConfigKey("controller.quorum.voters", list, None, "id@host:port of every voter, comma-separated."),
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
        "NAME:PROTOCOL of every listener name; only PLAINTEXT is supported.",
    ),
    ConfigKey(
        "inter.broker.listener.name",
        str,
        None,
        "The listener brokers register as their own address (default: the only listener, or PLAINTEXT).",
    ),
    ConfigKey("log.dirs", list, None, "Directories for partition data, comma-separated."),
    ConfigKey("metadata.log.dir", str, None, "Directory for the Raft state and metadata (default: first of log.dirs)."),
    ConfigKey("metrics.port", int, 0, "Port of the Prometheus endpoint; 0 disables it."),
    ConfigKey("metrics.host", str, "127.0.0.1", "Address the Prometheus endpoint binds to."),
    ConfigKey("cluster.id", str, None, "Cluster id used by --format-if-empty when the data dir is not formatted."),
    ConfigKey("controller.quorum.election.timeout.ms", int, 500, "Raft election timeout (randomized up to 2x)."),
    ConfigKey("controller.quorum.heartbeat.interval.ms", int, 50, "Raft leader heartbeat interval."),
    ConfigKey("controller.quorum.tick.ms", int, 10, "Resolution of the Raft timers."),
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
        "group.consumer.heartbeat.interval.ms",
        int,
        500,
        "How often members heartbeat (the coordinator tells them).",
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


# ---- end of the Kafka protocol listener's keys -------------------------------------------------

SCHEMA: dict[str, ConfigKey] = {key.name: key for key in _KEYS}
_ENV_TO_KEY = {key.env_name: key for key in _KEYS}


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


def read_env(environ: Mapping[str, str]) -> dict[str, str]:
    """RAFTLOG_* variables that name a known key; other RAFTLOG_* variables belong to the CLI."""
    return {_ENV_TO_KEY[name].name: value for name, value in environ.items() if name in _ENV_TO_KEY}


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
SUPPORTED_SECURITY_PROTOCOLS = ("PLAINTEXT",)
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
    protocols: dict[str, str] = {}
    for entry in values["listener.security.protocol.map"]:
        name, sep, protocol = entry.partition(":")
        if not sep or not name.strip() or not protocol.strip():
            raise ConfigError(f"listener.security.protocol.map: {entry!r} is not NAME:PROTOCOL")
        protocols[name.strip().upper()] = protocol.strip().upper()
    for name in names:
        if name not in protocols:
            raise ConfigError(f"listener.security.protocol.map has no entry for listener {name}")
        if protocols[name] not in SUPPORTED_SECURITY_PROTOCOLS:
            raise ConfigError(f"listener {name}: security protocol {protocols[name]} is not supported (only PLAINTEXT)")
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
    return bound, [advertised[name] for name in names], inter_broker


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

    def __init__(self, values: Mapping[str, Any], explicit: Iterable[str] = ()):
        self.values = dict(values)
        self.explicit = frozenset(explicit)  # keys set by file, environment or flag (not defaults)
        self.node_id: int = values["node.id"]
        self.roles: list[str] = values["process.roles"]
        self.voters: dict[int, Address] = parse_voters(values["controller.quorum.voters"])
        # Named listeners (Kafka's): one gRPC server each; a client is answered with the addresses
        # of the listener it came in on. Brokers register the inter-broker listener's advertised
        # address as their own (peers themselves reach each other at controller.quorum.voters).
        self.listeners, self.advertised_listeners, self.inter_broker_listener = _resolve_listeners(values)
        inter_broker = next(bound for bound in self.listeners if bound.name == self.inter_broker_listener)
        self.listener: Address = inter_broker.address
        self.advertised: Address = self.advertised_listener(self.inter_broker_listener).address
        self.kafka_listeners, self.kafka_advertised_listeners = resolve_kafka_listeners(values, self.listeners)
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
    raw: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if name not in SCHEMA:
                raise ConfigError(f"unknown configuration key {name!r}")
            raw[name] = value
    return NodeConfig(_resolve(raw), explicit=raw)


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
    if "controller" in values["process.roles"] and node_id not in voters:
        raise ConfigError(f"node.id {node_id} is not one of controller.quorum.voters {sorted(voters)}")
    if values["listeners"] is None:
        values["listeners"] = str(voters[node_id])
    grpc_listeners, _, _ = _resolve_listeners(values)  # checked here: every contradiction is a ConfigError
    resolve_kafka_listeners(values, grpc_listeners)
    if values["metadata.log.dir"] is None:
        values["metadata.log.dir"] = values["log.dirs"][0]
    _check_ranges(values)
    return values


def _check_roles(roles: list[str]) -> None:
    unknown = sorted(set(roles) - {"broker", "controller"})
    if unknown or not roles:
        raise ConfigError(f"process.roles: {','.join(roles) or '(empty)'} is not a subset of broker,controller")
    if "controller" not in roles:
        # Broker-only nodes would follow the metadata log as Raft observers; not built yet.
        raise ConfigError("process.roles: broker-only nodes are not supported yet; use broker,controller")


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
    ]

    def positive(name: str) -> Callable[[], str]:
        return lambda: f"{name} must be > 0, got {values[name]}"

    def at_least(key: ConfigKey) -> Callable[[], str]:
        return lambda: f"{key.name} must be >= {key.minimum}, got {values[key.name]}"

    checks += [(values[name] > 0, positive(name)) for name in _POSITIVE]
    checks += [(values[key.name] >= key.minimum, at_least(key)) for key in _KEYS if key.minimum is not None]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message())


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
    return format_value(value)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)
