"""A raftlog cluster of containers from the raftlog image (deploy/Dockerfile) on its own Docker
network: for tests/containers and for the chaos suite's docker backend (`python -m chaos
--backend docker`), which drives it through the same methods as a LocalCluster.

Every container, network and volume it makes carries the label ``raftlog.test=<run id>`` and is
removed by `ContainerCluster.remove` (which the fixtures and the chaos run call even when
something failed): there is no testcontainers reaper (its image cannot be pulled here). Nodes
have two listeners, as in deploy/compose.yaml: INTERNAL (raftlog-N:9092 on the network) and
EXTERNAL (published on 127.0.0.1, advertised with the host port), so clients run on the host.
A secure cluster (``secure_dir``: the CA and certificates of raftlog/cluster/secure.py made there
on the host, each node's own files mounted read-only at TLS_MOUNT) has both listeners SSL with
client certificates required, mutual TLS between nodes by their host names, and ACLs on, as
`raftlog cluster up --secure`; the host's clients connect with the admin's or a user's certificate.
Faults: docker kill/stop/start/pause, disconnecting a container from the network, iptables
rules inside a container's network namespace (nsenter) for a partition between nodes only, and a
tc tbf token bucket there for a bandwidth limit.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, NotFound
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from raftlog.client.admin import Admin
from raftlog.cluster.local import add_client_user
from raftlog.cluster.secure import SecureLayout, tls_and_acl_config
from raftlog.config import SCHEMA
from raftlog.errors import RaftlogError

IMAGE = "raftlog:latest"
LABEL = "raftlog.test"
INTERNAL_PORT = 9092
EXTERNAL_PORT = 29092
METRICS_PORT = 9100
REPO = Path(__file__).resolve().parents[1]
# Where a secure node's certificate, key and CA are mounted, and the uid of the image's raftlog
# user (deploy/Dockerfile), who must be able to read the key.
TLS_MOUNT = Path("/etc/raftlog/tls")
IMAGE_UID = 10001


def docker_client_or_reason() -> tuple[docker.DockerClient | None, str]:
    """A client of a reachable Docker engine, or None and why not."""
    try:
        client = docker.from_env()
        client.ping()
        return client, ""
    except DockerException as exc:
        return None, f"no Docker engine reachable: {exc}"


def ensure_image(client: docker.DockerClient) -> None:
    """Makes sure the image is built from the sources as they are (deploy/build-image.sh, which
    reuses the image when a hash of the sources says it is current: a fraction of a second)."""
    subprocess.run(
        [str(REPO / "deploy" / "build-image.sh")],
        cwd=REPO,
        check=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHON": sys.executable},
    )


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (the kernel's choice, so they do not collide with others')."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class NodePorts:
    grpc: int  # host port of the EXTERNAL listener
    metrics: int


@dataclass
class ContainerNodeSpec:
    """What the chaos run reads of a node, as of a LocalCluster's NodeSpec."""

    node_id: int
    partitions_dir: Path  # the data volume as the host sees it (the local volume driver's mountpoint)


class ContainerCluster:
    def __init__(
        self,
        client: docker.DockerClient,
        nodes: int = 3,
        extra_env: dict[str, str] | None = None,
        secure_dir: Path | None = None,
    ):
        """secure_dir: a secure cluster, its CA and certificates made in this host directory."""
        self.client = client
        self.run_id = uuid.uuid4().hex[:10]
        self.labels = {LABEL: self.run_id}
        self.node_ids = list(range(1, nodes + 1))
        self.secure_dir = secure_dir
        self.secure = (
            SecureLayout(secure_dir, self.node_ids, {n: self.hostname(n) for n in self.node_ids})
            if secure_dir is not None
            else None
        )
        self.extra_env = dict(extra_env or {})
        self.node_env: dict[int, dict[str, str]] = {}  # per node, on top of extra_env (e.g. libfaketime)
        ports = free_ports(2 * nodes)
        self.ports = {n: NodePorts(ports[2 * i], ports[2 * i + 1]) for i, n in enumerate(self.node_ids)}
        self.network = Network(docker_network_kw={"labels": self.labels})
        self.network.create()
        self.network_name = self.network.name
        for n in self.node_ids:
            for kind in ("data", "meta"):
                client.volumes.create(self.volume(n, kind), labels=self.labels)
        self.containers: dict[int, DockerContainer] = {}
        self.specs = {
            n: ContainerNodeSpec(n, Path(client.volumes.get(self.volume(n, "data")).attrs["Mountpoint"]))
            for n in self.node_ids
        }
        self._cut_off: set[int] = set()  # disconnected from the network
        self._firewalled: set[int] = set()  # with DROP rules in their network namespace
        self._throttled: set[int] = set()  # with a tbf qdisc on their eth0

    # -- names ---------------------------------------------------------------------------------

    def hostname(self, node_id: int) -> str:
        return f"raftlog-{node_id}"

    def name(self, node_id: int) -> str:
        return f"raftlog-{self.run_id}-{node_id}"

    def volume(self, node_id: int, kind: str) -> str:
        return f"raftlog-{self.run_id}-{node_id}-{kind}"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.ports[n].grpc}" for n in self.node_ids)

    def tls_files_dir(self, node_id: int) -> Path:
        """The host directory mounted at TLS_MOUNT in the node's container: its own certificate
        and key and the CA (never another node's key), readable by the image's user."""
        assert self.secure is not None and self.secure_dir is not None
        directory = self.secure_dir / f"tls-node-{node_id}"
        directory.mkdir(exist_ok=True)
        issued = self.secure.ca.node(node_id)
        for source, name in (
            (issued.certificate, "node.pem"),
            (issued.key, "node.key"),
            (self.secure.ca.ca.certificate, "ca.pem"),
        ):
            shutil.copyfile(source, directory / name)
            if os.geteuid() == 0:
                os.chown(directory / name, IMAGE_UID, IMAGE_UID)
            else:  # the container's user is not ours: it can read the key only if everyone can
                os.chmod(directory / name, 0o644)
        return directory

    def _security_env(self) -> dict[str, str]:
        if self.secure is None:
            return {"RAFTLOG_LISTENER_SECURITY_PROTOCOL_MAP": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"}
        config = {
            "listener.security.protocol.map": "INTERNAL:SSL,EXTERNAL:SSL",
            **tls_and_acl_config(TLS_MOUNT / "node.pem", TLS_MOUNT / "node.key", TLS_MOUNT / "ca.pem"),
        }
        return {SCHEMA[name].env_name: str(value) for name, value in config.items()}

    def env(self, node_id: int) -> dict[str, str]:
        voters = ",".join(f"{n}@{self.hostname(n)}:{INTERNAL_PORT}" for n in self.node_ids)
        return {
            "RAFTLOG_NODE_ID": str(node_id),
            "RAFTLOG_CLUSTER_ID": f"test-{self.run_id}",
            "RAFTLOG_CONTROLLER_QUORUM_VOTERS": voters,
            "RAFTLOG_LISTENERS": f"INTERNAL://0.0.0.0:{INTERNAL_PORT},EXTERNAL://0.0.0.0:{EXTERNAL_PORT}",
            "RAFTLOG_ADVERTISED_LISTENERS": (
                f"INTERNAL://{self.hostname(node_id)}:{INTERNAL_PORT},EXTERNAL://127.0.0.1:{self.ports[node_id].grpc}"
            ),
            **self._security_env(),
            "RAFTLOG_INTER_BROKER_LISTENER_NAME": "INTERNAL",
            "RAFTLOG_METRICS_PORT": str(METRICS_PORT),
            **self.extra_env,
            **self.node_env.get(node_id, {}),
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def create_node(self, node_id: int) -> None:
        """Creates and starts a fresh container for the node on its volumes (they outlive it)."""
        container = (
            DockerContainer(
                IMAGE,
                env=self.env(node_id),
                name=self.name(node_id),
                network=self.network,
                network_aliases=[self.hostname(node_id)],
                hostname=self.hostname(node_id),
                labels=self.labels,
            )
            .with_volume_mapping(self.volume(node_id, "data"), "/var/lib/raftlog/data", "rw")
            .with_volume_mapping(self.volume(node_id, "meta"), "/var/lib/raftlog/meta", "rw")
        )
        if self.secure is not None:
            container = container.with_volume_mapping(str(self.tls_files_dir(node_id)), str(TLS_MOUNT), "ro")
        # Published on loopback only (testcontainers' own port binding takes every interface).
        container.ports[f"{EXTERNAL_PORT}/tcp"] = ("127.0.0.1", self.ports[node_id].grpc)
        container.ports[f"{METRICS_PORT}/tcp"] = ("127.0.0.1", self.ports[node_id].metrics)
        container.start()
        self.containers[node_id] = container

    def start(self) -> None:
        for n in self.node_ids:
            self.create_node(n)

    def docker_container(self, node_id: int):
        return self.client.containers.get(self.name(node_id))

    def pause(self, node_id: int) -> None:
        self.docker_container(node_id).pause()

    def unpause(self, node_id: int) -> None:
        self.docker_container(node_id).unpause()

    def disconnect(self, node_id: int) -> None:
        self.client.networks.get(self.network_name).disconnect(self.name(node_id))

    def connect(self, node_id: int) -> None:
        self.client.networks.get(self.network_name).connect(self.name(node_id), aliases=[self.hostname(node_id)])

    def recreate(self, node_id: int) -> None:
        """Removes the node's container (not its volumes) and creates a new one on them."""
        self.docker_container(node_id).remove(force=True)
        self.create_node(node_id)

    # -- the LocalCluster interface the chaos run uses ------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap

    def is_running(self, node_id: int) -> bool:
        """Running or paused (a paused node is a stopped process, as under SIGSTOP)."""
        try:
            container = self.docker_container(node_id)
        except NotFound:
            return False
        return container.status in ("running", "paused")

    def signal_node(self, node_id: int, sig: int) -> None:
        if sig == signal.SIGSTOP:
            self.pause(node_id)
        elif sig == signal.SIGCONT:
            self.unpause(node_id)
        else:
            self.docker_container(node_id).kill(signal=int(sig))

    def kill_node(self, node_id: int) -> None:
        """docker kill (SIGKILL); the container stays, to be started again."""
        self.docker_container(node_id).kill()

    def start_node(self, node_id: int) -> None:
        """Starts the node's stopped or killed container again."""
        self.docker_container(node_id).start()

    def stop_node(self, node_id: int, timeout_s: int = 15) -> int | None:
        """docker stop (SIGTERM: a clean shutdown); the exit code, None if it was not running."""
        if not self.is_running(node_id):
            return None
        container = self.docker_container(node_id)
        if container.status == "paused":
            container.unpause()
        container.stop(timeout=timeout_s)
        container.reload()
        return container.attrs["State"]["ExitCode"]

    def wait_for_leader(self, timeout_s: float = 30.0, node_ids: list[int] | None = None) -> int:
        """The active controller's id, once one is known."""

        def controller() -> int | None:
            with self.admin(node_ids) as admin:
                controller_id = admin.describe_cluster()["controller_id"]
            return controller_id if controller_id >= 0 else None

        return wait_until(controller, timeout_s, "an active controller")

    def stop(self) -> None:
        """docker stop of every running node (clean shutdowns); containers and volumes stay."""
        for n in self.node_ids:
            self.stop_node(n)

    # -- network faults ------------------------------------------------------------------------------

    def ip_address(self, node_id: int) -> str:
        container = self.docker_container(node_id)
        return container.attrs["NetworkSettings"]["Networks"][self.network_name]["IPAddress"]

    def isolate(self, node_id: int) -> None:
        """Cuts the container off its network: from the other nodes and from clients alike."""
        self.disconnect(node_id)
        self._cut_off.add(node_id)

    def partition(self, group: list[int], others: list[int]) -> None:
        """Drops every packet between `group` and `others` (iptables in the network namespaces
        of `group`'s containers, entered with nsenter); clients on the host still reach everyone."""
        addresses = [self.ip_address(n) for n in others]
        for n in group:
            for address in addresses:
                self._iptables(n, "-A", "INPUT", "-s", address, "-j", "DROP")
                self._iptables(n, "-A", "OUTPUT", "-d", address, "-j", "DROP")
            self._firewalled.add(n)

    def heal(self) -> None:
        self.unlimit_bandwidth()
        for n in sorted(self._firewalled):
            if self.is_running(n):
                self._iptables(n, "-F", "INPUT")
                self._iptables(n, "-F", "OUTPUT")
        self._firewalled.clear()
        for n in sorted(self._cut_off):
            self.connect(n)
        self._cut_off.clear()

    def _iptables(self, node_id: int, *rule: str) -> None:
        self._in_netns(node_id, "iptables", *rule)

    def limit_bandwidth(self, node_id: int, rate_kbit: int) -> None:
        """Everything the container sends (to nodes and clients alike) goes through a token bucket
        (tc tbf on its eth0; netem is not in every kernel, tbf is) of rate_kbit."""
        # burst: a few full-size packets, so the rate holds over short windows too; latency: how
        # long a packet may wait for tokens before the queue drops it.
        self._in_netns(
            node_id, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
            "rate", f"{rate_kbit}kbit", "burst", "16kb", "latency", "400ms",
        )  # fmt: skip
        self._throttled.add(node_id)

    def bandwidth_stats(self, node_id: int) -> dict[str, int]:
        """Bytes sent, packets dropped and overlimits (packets that waited for tokens) of the
        node's token bucket."""
        output = self._in_netns(node_id, "tc", "-s", "qdisc", "show", "dev", "eth0")
        found = re.search(r"Sent (\d+) bytes \d+ pkt \(dropped (\d+), overlimits (\d+)", output)
        assert found is not None, f"no tbf statistics in {output!r}"
        return {"sent_bytes": int(found[1]), "dropped": int(found[2]), "overlimits": int(found[3])}

    def unlimit_bandwidth(self) -> None:
        for n in sorted(self._throttled):
            if self.is_running(n):
                self._in_netns(n, "tc", "qdisc", "del", "dev", "eth0", "root")
        self._throttled.clear()

    def _in_netns(self, node_id: int, *command: str) -> str:
        """Runs a host tool (iptables, tc) in the container's network namespace (nsenter)."""
        pid = self.docker_container(node_id).attrs["State"]["Pid"]
        result = subprocess.run(["nsenter", "-t", str(pid), "-n", *command], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"node {node_id}: {' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout

    def remove(self) -> None:
        """Removes every container, the network and every volume of this run (by label)."""
        selector = {"label": f"{LABEL}={self.run_id}"}
        for container in self.client.containers.list(all=True, filters=selector):
            container.remove(force=True)
        for network in self.client.networks.list(filters=selector):
            network.remove()
        for volume in self.client.volumes.list(filters=selector):
            volume.remove(force=True)

    def logs(self, node_id: int, tail: int = 40) -> str:
        try:
            return self.docker_container(node_id).logs(tail=tail).decode(errors="replace")
        except NotFound:
            return "(no container)"

    # -- waiting -----------------------------------------------------------------------------------

    @property
    def client_settings(self) -> dict[str, str]:
        """Keyword arguments for Admin, Producer and Consumer: the admin's TLS files, or none."""
        return self.secure.client_settings() if self.secure is not None else {}

    def add_client_user(
        self, name: str, topic: str, group: str | None = None, idempotent: bool = False, timeout_s: float = 30.0
    ) -> dict[str, str | None]:
        """As LocalCluster.add_client_user: a non-super user with only a client's ACLs."""
        assert self.secure_dir is not None, "only a secure cluster has users"
        return add_client_user(self.secure_dir, self.admin, self.node_ids, name, topic, group, idempotent, timeout_s)

    def admin(self, node_ids: list[int] | None = None, timeout_ms: int = 3000) -> Admin:
        ids = node_ids or self.node_ids
        return Admin(
            ",".join(f"127.0.0.1:{self.ports[n].grpc}" for n in ids), timeout_ms=timeout_ms, **self.client_settings
        )

    def wait_for_brokers(self, count: int, timeout_s: float = 60.0, node_ids: list[int] | None = None) -> None:
        def unfenced() -> bool:
            with self.admin(node_ids) as admin:
                return sum(not b["fenced"] for b in admin.describe_cluster()["brokers"]) >= count

        wait_until(unfenced, timeout_s, f"{count} unfenced brokers")

    def partitions(self, topic: str, node_ids: list[int] | None = None) -> list[dict]:
        with self.admin(node_ids) as admin:
            return admin.describe_topics([topic])[0]["partitions"]

    def wait_for_full_isr(self, topic: str, timeout_s: float = 60.0) -> None:
        def full() -> bool:
            return all(sorted(p["isr"]) == sorted(p["replicas"]) and p["leader"] >= 0 for p in self.partitions(topic))

        wait_until(full, timeout_s, f"every partition of {topic} with a full ISR")


def wait_until(predicate, timeout_s: float, what: str):
    """Polls predicate (a RaftlogError counts as not yet) until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except RaftlogError as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_error})")
