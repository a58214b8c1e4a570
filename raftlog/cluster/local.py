"""LocalCluster: N node processes on 127.0.0.1, each with its own config file and data dir.

Layout of the data dir::

    <data-dir>/cluster.json         cluster id, node count, how many are dedicated controllers, first
                                    node id, ports (so a re-run restarts the same cluster)
    <data-dir>/node-<id>/node.toml  the node's configuration
    <data-dir>/node-<id>/node.log   the node's log (stderr)
    <data-dir>/node-<id>/node.pid   the pid of its running process (advisory: a pidfile whose
                                    process is gone is stale and removed; one whose process runs
                                    makes start() refuse, naming the cluster that runs)
    <data-dir>/node-<id>/data/      its log.dirs and metadata dir (log.dirs elsewhere if given)

Nodes are numbered first_node_id, first_node_id + 1, ... (default 1; Kafka operators often start
at 0, which works too); the node in position k listens on base_port + k whatever its id, so the
bootstrap addresses do not depend on the numbering.

Shapes: every node combined (`process.roles=broker,controller`, all voters: `controllers=None`),
or `controllers` dedicated controllers (the first ones: `process.roles=controller`, the only
voters) and the rest broker-only nodes (`process.roles=broker`, Raft observers). Clients bootstrap
from the brokers (as Kafka's do); only brokers get a Kafka protocol listener. Every process is started by this object and
stopped by its pid. With exit_with_parent (what `raftlog cluster up` uses), each node stops when
the process that started it dies, so a supervisor killed with -9 leaves no node behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from raftlog.authorizer.acls import AclFilter
from raftlog.client.admin import Admin
from raftlog.cluster.secure import (
    ADMIN_MECHANISM,
    ADMIN_NAME,
    CLIENT_PORT_OFFSET,
    SASL_PORT_OFFSET,
    SecureLayout,
    client_bindings,
)
from raftlog.config import KAFKA_DEFAULT_LISTENER_NAME, ConfigError, load_config
from raftlog.durable_file import write_durable
from raftlog.errors import RaftlogError
from raftlog.storage_format import random_cluster_id

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
# `cluster up` gives the k-th node a Kafka protocol listener on base port + 800 + k (19891 for
# `make run`), well clear of the gRPC (base + k) and metrics (base + 100 + k) ports.
KAFKA_PORT_OFFSET = 800
# Node k listens on base port + k; metrics are at base port + 100 + k and secure client listeners
# at + 50 + k, so a cluster stays below 50 nodes' worth of ports.
MAX_NODES = 20


# Keys LocalCluster writes into each node's config itself; a setting for every node cannot name them.
PER_NODE_KEYS = frozenset(
    [
        "node.id",
        "process.roles",
        "cluster.id",
        "controller.quorum.voters",
        "listeners",
        "kafka.listeners",
        "log.dirs",
        "metadata.log.dir",
        "metrics.port",
    ]
)


class ClusterLayoutError(RuntimeError):
    """The data dir holds a different cluster than the one asked for, or settings it cannot use."""


class ClusterRunningError(RuntimeError):
    """The data dir's nodes are already running (their pidfiles name live processes)."""


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    port: int
    metrics_port: int
    home: Path
    host: str = HOST
    log_dir: Path | None = None  # None: home/data, with the metadata
    kafka_port: int = 0  # its Kafka protocol listener (kafka.listeners); 0: none
    roles: tuple[str, ...] = ("broker", "controller")

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def is_controller(self) -> bool:
        return "controller" in self.roles

    @property
    def data_dir(self) -> Path:
        """The metadata dir, and the log dir unless log_dir says otherwise."""
        return self.home / "data"

    @property
    def partitions_dir(self) -> Path:
        """Where the node keeps its partition directories (`<topic>-<partition>`)."""
        return self.log_dir or self.data_dir

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.home / "node.toml"

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"

    @property
    def pid_path(self) -> Path:
        return self.home / "node.pid"

    def running_pid(self) -> int | None:
        """The pid in the pidfile if that process runs this node's config; a stale pidfile is removed."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            pid = -1
        try:
            # The config path on its command line guards against a pid reused by another process.
            alive = pid > 0 and str(self.config_path) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                errors="replace"
            )
        except OSError:
            alive = False
        if alive:
            return pid
        self.pid_path.unlink(missing_ok=True)
        return None


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class LocalCluster:
    def __init__(
        self,
        data_dir: str | Path,
        nodes: int = 3,
        base_port: int = 19091,
        metrics_base_port: int | None = None,
        extra_config: dict[str, object] | None = None,
        hosts: dict[int, str] | None = None,
        launcher: Callable[[int], list[str]] | None = None,
        first_node_id: int = 1,
        log_dirs: dict[int, Path] | None = None,
        exit_with_parent: bool = False,
        secure: bool = False,
        kafka_base_port: int = 0,
        controllers: int | None = None,
    ):
        """hosts: node id -> the address it listens on (default 127.0.0.1); launcher: node id ->
        a command prefix to start it with (the chaos suite runs nodes in network namespaces);
        log_dirs: node id -> its log.dirs, apart from its metadata (the chaos suite puts them on
        small mounts it can fill); exit_with_parent: each node stops (SIGTERM) when this process dies;
        secure: TLS and mutual TLS between nodes (raftlog/cluster/secure.py); kafka_base_port: the k-th
        node's Kafka listener is on kafka_base_port + k (0: no Kafka listeners); controllers: None for
        combined nodes, else how many of the `nodes` are dedicated controllers (the rest are brokers)."""
        extra = dict(extra_config or {})
        owned = sorted(PER_NODE_KEYS & set(extra))
        if owned:
            raise ClusterLayoutError(
                f"{owned[0]}: set per node by the cluster itself; it cannot be given for every node"
            )
        if not 1 <= nodes <= MAX_NODES:
            raise ClusterLayoutError(f"a local cluster has 1..{MAX_NODES} nodes, got {nodes}")
        if controllers is not None and not (1 <= controllers < nodes):
            raise ClusterLayoutError(
                f"--controllers must be 1..{nodes - 1} with {nodes} nodes (at least one broker), got {controllers}"
            )
        if first_node_id < 0:
            raise ClusterLayoutError(f"--first-node-id must be >= 0, got {first_node_id}")
        self.data_dir = Path(data_dir).resolve()
        self.extra_config = extra
        self.exit_with_parent = exit_with_parent
        self.controllers = controllers
        self.cluster_id = self._load_or_create_layout(nodes, base_port, first_node_id, controllers)
        metrics_base = base_port + 100 if metrics_base_port is None else metrics_base_port
        self.specs = {
            i: NodeSpec(
                i,
                base_port + k,
                metrics_base + k if metrics_base else 0,
                self.data_dir / f"node-{i}",
                (hosts or {}).get(i, HOST),
                (log_dirs or {}).get(i),
                kafka_base_port + k if kafka_base_port and (controllers is None or k >= controllers) else 0,
                ("broker", "controller")
                if controllers is None
                else ("controller",)
                if k < controllers
                else ("broker",),
            )
            for k, i in enumerate(range(first_node_id, first_node_id + nodes))
        }
        # -- secure (TLS): certificates in <data-dir>/tls, an SSL client listener per node --
        self.secure = (
            SecureLayout(self.data_dir, list(self.specs), {i: spec.host for i, spec in self.specs.items()})
            if secure
            else None
        )
        self._launcher = launcher
        self.processes: dict[int, subprocess.Popen] = {}
        self._epochs_seen: dict[int, int] = {}
        self._base_port, self._metrics_base, self._kafka_base_port = base_port, metrics_base, kafka_base_port
        # Controllers added by add_node: they start as observers (not in controller.quorum.voters)
        # until `quorum add-controller` makes them voters; the log's configuration wins from then on.
        self.joining: set[int] = set()

    def _load_or_create_layout(self, nodes: int, base_port: int, first_node_id: int, controllers: int | None) -> str:
        layout_path = self.data_dir / "cluster.json"
        wanted = {"nodes": nodes, "base_port": base_port, "first_node_id": first_node_id, "controllers": controllers}
        if layout_path.exists():
            layout = json.loads(layout_path.read_text())
            # Layouts written before first_node_id existed numbered their nodes from 1.
            existing = {
                "nodes": layout["nodes"],
                "base_port": layout["base_port"],
                "first_node_id": layout.get("first_node_id", 1),
                "controllers": layout.get("controllers"),  # older layouts: combined nodes
            }
            if existing != wanted:
                shape = (
                    f"{existing['nodes']} combined nodes"
                    if existing["controllers"] is None
                    else f"{existing['controllers']} controllers and {existing['nodes'] - existing['controllers']} brokers"
                )
                raise ClusterLayoutError(
                    f"{self.data_dir} holds a cluster of {shape} on base port "
                    f"{existing['base_port']} with ids from {existing['first_node_id']}; use those flags "
                    f"or another --data-dir"
                )
            return layout["cluster_id"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = random_cluster_id()
        # Crash-safe: it holds the cluster id the nodes' data dirs are stamped with.
        write_durable(layout_path, json.dumps({"cluster_id": cluster_id, **wanted}, indent=2) + "\n")
        return cluster_id

    @property
    def broker_ids(self) -> list[int]:
        return [i for i, spec in self.specs.items() if spec.is_broker]

    @property
    def controller_ids(self) -> list[int]:
        """The voters of the metadata quorum."""
        return [i for i, spec in self.specs.items() if spec.is_controller]

    @property
    def bootstrap_servers(self) -> str:
        """The brokers' addresses: clients bootstrap from brokers, as Kafka's do."""
        brokers = [self.specs[i] for i in self.broker_ids]
        if self.secure is not None:  # clients go to the CLIENT listeners
            return ",".join(f"{spec.host}:{spec.port + CLIENT_PORT_OFFSET}" for spec in brokers)
        return ",".join(spec.address for spec in brokers)

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_SSL listeners of a secure cluster ("" otherwise)."""
        if self.secure is None:
            return ""
        return ",".join(f"{spec.host}:{spec.port + SASL_PORT_OFFSET}" for spec in self.specs.values())

    def ensure_admin_user(self) -> None:
        """A secure cluster's admin SCRAM credential (the password in admin-scram.properties), set
        through the CLIENT listeners with the admin certificate (User:admin is a super user)."""
        assert self.secure is not None, "only a secure cluster has an admin user"
        with self.admin(timeout_ms=15000) as admin:
            admin.upsert_scram_credential(ADMIN_NAME, ADMIN_MECHANISM, self.secure.admin_password)

    def add_client_user(
        self, name: str, topic: str, group: str | None = None, idempotent: bool = False, timeout_s: float = 30.0
    ) -> dict[str, str | None]:
        """A secure cluster's non-super user ``User:<name>`` with a new client certificate and only the
        ACLs a client of `topic` (and `group`) needs (secure.client_bindings), applied on every node
        when this returns; its keyword arguments for Producer and Consumer."""
        assert self.secure is not None, "only a secure cluster has users"
        return add_client_user(self.data_dir, self.admin, list(self.specs), name, topic, group, idempotent, timeout_s)

    @property
    def client_settings(self) -> dict[str, str]:
        """Keyword arguments for Admin, Producer and Consumer: the admin's TLS files, or none."""
        return self.secure.client_settings() if self.secure is not None else {}

    @property
    def kafka_client_settings(self) -> dict[str, str]:
        """librdkafka settings for the Kafka listeners: the admin user's SCRAM login over TLS (SASL_SSL), or none."""
        return self.secure.kafka_client_settings() if self.secure is not None else {}

    @property
    def kafka_bootstrap_servers(self) -> str:
        """The nodes' Kafka listeners, for a Kafka client's bootstrap.servers ("" when none)."""
        return ",".join(f"{spec.host}:{spec.kafka_port}" for spec in self.specs.values() if spec.kafka_port)

    def add_node(self, roles: tuple[str, ...] = ("controller",)) -> int:
        """One more node after the others (next id and port), not in the voter list the nodes are
        configured with: a controller joins as an observer (KIP-853), a broker as a broker. Not
        remembered in cluster.json: for tests and benchmarks of membership changes."""
        if self.secure is not None:
            raise ClusterLayoutError("add_node: a secure cluster's certificates are made for its first nodes only")
        k = len(self.specs)
        if k >= MAX_NODES:
            raise ClusterLayoutError(f"a local cluster has at most {MAX_NODES} nodes")
        node_id = max(self.specs) + 1
        self.specs[node_id] = NodeSpec(
            node_id,
            self._base_port + k,
            self._metrics_base + k if self._metrics_base else 0,
            self.data_dir / f"node-{node_id}",
            kafka_port=self._kafka_base_port + k if self._kafka_base_port and "broker" in roles else 0,
            roles=roles,
        )
        self.joining.add(node_id)
        return node_id

    def _write_config(self, spec: NodeSpec) -> None:
        voters = ",".join(
            f"{s.node_id}@{s.address}" for s in self.specs.values() if s.is_controller and s.node_id not in self.joining
        )
        values: dict[str, object] = {
            "node.id": spec.node_id,
            "cluster.id": self.cluster_id,
            "process.roles": ",".join(spec.roles),
            "controller.quorum.voters": voters,
            "listeners": spec.address,
            "log.dirs": str(spec.partitions_dir),
            "metrics.port": spec.metrics_port,
            **(
                self.secure.node_config(
                    spec.node_id, spec.host, spec.port, KAFKA_DEFAULT_LISTENER_NAME if spec.kafka_port else None
                )
                if self.secure is not None
                else {}
            ),
            **self.extra_config,
        }
        if spec.log_dir is not None:
            values["metadata.log.dir"] = str(spec.data_dir)
        if spec.kafka_port:
            values["kafka.listeners"] = f"{spec.host}:{spec.kafka_port}"
        spec.home.mkdir(parents=True, exist_ok=True)
        lines = [f'"{name}" = {_toml_value(value)}' for name, value in values.items()]
        spec.config_path.write_text("# written by raftlog cluster up\n" + "\n".join(lines) + "\n")

    def running_nodes(self, node_ids: list[int] | None = None) -> dict[int, int]:
        """Node id -> pid of this data dir's nodes (default: all) running now, from their pidfiles."""
        ids = list(self.specs) if node_ids is None else node_ids
        return {i: pid for i in ids if (pid := self.specs[i].running_pid()) is not None}

    def check_not_running(self, node_ids: list[int] | None = None) -> None:
        running = self.running_nodes(node_ids)
        if running:
            nodes = ", ".join(f"node {i} (pid {pid})" for i, pid in sorted(running.items()))
            raise ClusterRunningError(
                f"cluster {self.cluster_id} in {self.data_dir} is already running: {nodes}; stop it first or "
                "use another --data-dir"
            )

    def check_configs(self) -> list[str]:
        """Writes every node's config and validates it as the node will, before any node starts;
        returns the warnings (Kafka settings that mean nothing here), the same for every node."""
        warnings: list[str] = []
        for spec in self.specs.values():
            self._write_config(spec)
            try:
                warnings = load_config(spec.config_path, environ={}).warnings
            except ConfigError as exc:
                raise ClusterLayoutError(f"invalid configuration: {exc}") from None
        return warnings

    def start_node(self, node_id: int) -> subprocess.Popen:
        spec = self.specs[node_id]
        self.check_not_running([node_id])
        self._write_config(spec)
        command = [
            *(self._launcher(node_id) if self._launcher else []),
            sys.executable,
            "-m",
            "cli.main",
            "node",
            "start",
            "--config",
            str(spec.config_path),
            "--format-if-empty",
            *(["--exit-with-parent", str(os.getpid())] if self.exit_with_parent else []),
        ]
        # The node's settings are all in its config file (RAFTLOG_* settings the caller wants reach
        # the nodes through extra_config: `cluster up` folds them in).
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTLOG_")}
        with open(spec.log_path, "ab") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=log_file, env=env, start_new_session=True)
        self.processes[node_id] = process
        # Advisory (not crash-safe on purpose): a torn or stale pidfile is recognised and removed.
        spec.pid_path.write_text(f"{process.pid}\n")
        return process

    def start(self) -> None:
        """Refuses when this data dir's nodes already run; checks every config; starts every node."""
        self.check_not_running()
        self.check_configs()
        for node_id in self.specs:
            self.start_node(node_id)

    def _reaped(self, node_id: int) -> None:
        self.specs[node_id].pid_path.unlink(missing_ok=True)

    def is_running(self, node_id: int) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def signal_node(self, node_id: int, sig: int) -> None:
        process = self.processes[node_id]
        if process.poll() is None:
            os.kill(process.pid, sig)

    def kill_node(self, node_id: int) -> None:
        """kill -9, then reap."""
        self.signal_node(node_id, signal.SIGKILL)
        self.processes[node_id].wait(timeout=STOP_TIMEOUT_S)
        self._reaped(node_id)

    def stop_node(self, node_id: int, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL if it has not exited in time; returns the exit code."""
        process = self.processes.get(node_id)
        if process is None:
            return None
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # a paused node could not handle SIGTERM
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        self._reaped(node_id)
        return process.returncode

    def stop(self) -> None:
        for node_id in list(self.processes):
            if self.is_running(node_id):
                os.kill(self.processes[node_id].pid, signal.SIGCONT)
                os.kill(self.processes[node_id].pid, signal.SIGTERM)
        for node_id in list(self.processes):
            self.stop_node(node_id)

    def admin(self, node_ids: list[int] | None = None, timeout_ms: int = 5000) -> Admin:
        ids = node_ids or list(self.specs)
        if self.secure is not None:
            addresses = [f"{self.specs[i].host}:{self.specs[i].port + CLIENT_PORT_OFFSET}" for i in ids]
            return Admin(",".join(addresses), timeout_ms=timeout_ms, **self.client_settings)
        return Admin(",".join(self.specs[i].address for i in ids), timeout_ms=timeout_ms)

    def wait_for_leader(
        self, timeout_s: float = 30.0, node_ids: list[int] | None = None, exclude: int | None = None
    ) -> int:
        """Polls DescribeQuorum until a leader (other than `exclude`) answers; returns its id."""
        deadline = time.monotonic() + timeout_s
        with self.admin(node_ids, timeout_ms=2000) as admin:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    leader_id = admin.describe_quorum()["leader_id"]
                    if leader_id >= 0 and leader_id != exclude:
                        return leader_id
                except RaftlogError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"no leader within {timeout_s}s; see {self.data_dir}/node-*/node.log")

    def wait_for_brokers(self, count: int, timeout_s: float = 30.0) -> None:
        """Waits until `count` brokers are registered and unfenced."""
        deadline = time.monotonic() + timeout_s
        with self.admin(timeout_ms=2000) as admin:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    brokers = admin.describe_cluster()["brokers"]
                    if sum(not b["fenced"] for b in brokers) >= count:
                        return
                except RaftlogError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"fewer than {count} unfenced brokers after {timeout_s}s")

    def wait_for_rejoin(self, node_id: int, timeout_s: float = 30.0) -> None:
        """After a restart: waits until the node has registered anew (new incarnation), is unfenced,
        and has caught up with the metadata quorum."""
        deadline = time.monotonic() + timeout_s
        broker = self.specs[node_id].is_broker
        with self.admin([node_id], timeout_ms=2000) as own, self.admin(timeout_ms=2000) as any_node:
            while time.monotonic() < deadline:
                try:
                    quorum = any_node.describe_quorum()
                    row = next(r for r in quorum["replication"] if r["node_id"] == node_id)
                    if not broker and row["lag"] == 0:  # a dedicated controller: back and caught up
                        return
                    view = own.describe_cluster() if broker else {"brokers": []}
                    me = next(b for b in view["brokers"] if b["id"] == node_id)
                    if not me["fenced"] and me["epoch"] > self._epochs_seen.get(node_id, -1) and row["lag"] == 0:
                        self._epochs_seen[node_id] = me["epoch"]
                        return
                except (RaftlogError, StopIteration):
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"node {node_id} did not rejoin within {timeout_s}s")

    def remember_epochs(self) -> None:
        """Records every broker's current epoch, so wait_for_rejoin can tell a fresh registration."""
        with self.admin(timeout_ms=5000) as admin:
            self._epochs_seen = {b["id"]: b["epoch"] for b in admin.describe_cluster()["brokers"]}

    def _check_alive(self) -> None:
        """Fails fast when every started node has exited (e.g. a config error)."""
        if self.processes and all(p.poll() is not None for p in self.processes.values()):
            logs = ", ".join(str(s.log_path) for s in self.specs.values())
            raise RuntimeError(f"every node has exited; see {logs}")


def add_client_user(
    data_dir: Path,
    admin: Callable[..., Admin],
    node_ids: list[int],
    name: str,
    topic: str,
    group: str | None,
    idempotent: bool,
    timeout_s: float,
) -> dict[str, str | None]:
    """Issues ``User:<name>`` a client certificate from the CA in data_dir and grants it the ACLs a
    client of `topic` (and `group`) needs, through `admin(node_ids, timeout_ms=...)`; returns once
    every node applied them (a LocalCluster's and the chaos suite's container cluster's users)."""
    settings = SecureLayout.user_settings(data_dir, name)
    bindings = client_bindings(f"User:{name}", topic, group, idempotent)
    with admin(timeout_ms=15000) as client:
        client.create_acls(bindings)
    deadline = time.monotonic() + timeout_s
    for node_id in node_ids:  # each node applies the committed bindings on its own
        with admin([node_id], timeout_ms=2000) as client:
            while not set(bindings) <= set(client.describe_acls(AclFilter(principal=f"User:{name}"))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {node_id} did not apply the ACLs of User:{name} within {timeout_s}s")
                time.sleep(0.05)
    return settings
