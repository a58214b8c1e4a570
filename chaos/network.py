"""Test hosts in Linux network namespaces, so that a chaos test can cut the network between nodes.

Topology (all made here, removed by `destroy`; <prefix> and the subnet 10.77.<n> come from
the run's own slot, see chaos/slot.py, so two runs on one machine never share a name)::

    <prefix>-n1 (10.77.<n>.1) --veth--+
    <prefix>-n2 (10.77.<n>.2) --veth--+-- bridge br0 in <prefix>-sw
    <prefix>-n3 (10.77.<n>.3) --veth--+
    this process (10.77.<n>.254) -----+   (a veth from the test's own namespace: it runs the
                                           clients and the admin calls)

A node process runs inside its namespace (`launcher(node_id)` is the command prefix), so it
binds and connects from its own address only. A partition is a set of iptables DROP rules
inside the namespaces of the nodes it cuts off: packets vanish (no reset), as on a real
network that splits. `heal` removes them. Needs root and iproute2/iptables.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from chaos import slot as slots

HOST_SUFFIX = 254  # this process's address on the test network


class NetworkError(RuntimeError):
    pass


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")


class ChaosNetwork:
    def __init__(self, node_ids: Iterable[int]):
        """Claims a slot (its prefix and subnet) at once: the nodes' addresses are known before
        the network is built. `destroy` gives it back."""
        self.node_ids = sorted(node_ids)
        self.slot = slots.claim()
        self.prefix = self.slot.prefix
        self.subnet = self.slot.subnet
        self._created = False
        self._cut: dict[int, set[str]] = {}  # node -> addresses it cannot exchange packets with

    # -- naming ----------------------------------------------------------------------------------

    def namespace(self, node_id: int) -> str:
        return f"{self.prefix}-n{node_id}"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    @property
    def host_address(self) -> str:
        return f"{self.subnet}.{HOST_SUFFIX}"

    def address(self, node_id: int) -> str:
        return f"{self.subnet}.{node_id}"

    def launcher(self, node_id: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(node_id)]

    # -- lifecycle -------------------------------------------------------------------------------

    def create(self) -> None:
        # Leftovers of an interrupted run with this prefix were removed when the slot was claimed.
        if not self.slot.held:
            raise NetworkError(f"{self.prefix}: this network was destroyed and its slot given back")
        self._created = True
        _run("ip", "netns", "add", self.switch)
        _run("ip", "-n", self.switch, "link", "set", "lo", "up")
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for node_id in self.node_ids:
            namespace = self.namespace(node_id)
            _run("ip", "netns", "add", namespace)
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            self._plug(f"{self.prefix}-n{node_id}", namespace, self.address(node_id))
        self._plug(f"{self.prefix}-h", None, self.host_address)

    def _plug(self, name: str, namespace: str | None, address: str) -> None:
        """A veth pair: one end (with the address) in namespace (None: ours), the other on the bridge."""
        inner, outer = f"{name}a", f"{name}b"
        _run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        _run("ip", "link", "set", outer, "netns", self.switch)
        _run("ip", "-n", self.switch, "link", "set", outer, "master", "br0")
        _run("ip", "-n", self.switch, "link", "set", outer, "up")
        where = ["-n", namespace] if namespace else []
        if namespace:
            _run("ip", "link", "set", inner, "netns", namespace)
        _run("ip", *where, "addr", "add", f"{address}/24", "dev", inner)
        _run("ip", *where, "link", "set", inner, "up")

    def destroy(self) -> None:
        """Removes every namespace and link of this network (their veth pairs go with them) and
        gives the slot back. Idempotent."""
        if self._created:
            namespaces = [self.switch] + [self.namespace(n) for n in self.node_ids]
            for name in namespaces:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", f"{self.prefix}-ha"], capture_output=True, timeout=30)
            self._created = False
        self._cut.clear()
        self.slot.release()

    # -- faults ----------------------------------------------------------------------------------

    def isolate(self, node_id: int, from_clients: bool = True) -> None:
        """Cuts node_id off from every other node (and from this process, unless told not to)."""
        others = [self.address(n) for n in self.node_ids if n != node_id]
        self._drop(node_id, others + ([self.host_address] if from_clients else []))

    def partition(self, *groups: Iterable[int]) -> None:
        """Nodes in different groups cannot exchange packets; clients still reach everyone."""
        sides = [set(group) for group in groups]
        for side in sides:
            strangers = [self.address(n) for other in sides if other is not side for n in other]
            for node_id in side:
                self._drop(node_id, strangers)

    def _drop(self, node_id: int, addresses: list[str]) -> None:
        namespace = self.namespace(node_id)
        for address in addresses:
            if address in self._cut.setdefault(node_id, set()):
                continue
            _run("ip", "netns", "exec", namespace, "iptables", "-A", "INPUT", "-s", address, "-j", "DROP")
            _run("ip", "netns", "exec", namespace, "iptables", "-A", "OUTPUT", "-d", address, "-j", "DROP")
            self._cut[node_id].add(address)

    def heal(self) -> None:
        for node_id in list(self._cut):
            _run("ip", "netns", "exec", self.namespace(node_id), "iptables", "-F")
        self._cut.clear()

    def __enter__(self) -> ChaosNetwork:
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()
