"""Two chaos networks on one machine at once: each gets its own slot (prefix and subnet), and
building one never removes the other's namespaces. Needs root (ip netns)."""

from __future__ import annotations

import socket
import subprocess
import sys

from chaos.network import ChaosNetwork


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.split()}


def test_two_networks_built_at_once_do_not_share_or_remove_each_others_namespaces():
    first = ChaosNetwork([1, 2, 3])
    second = None
    try:
        first.create()
        first_namespaces = {first.switch} | {first.namespace(n) for n in (1, 2, 3)}
        assert first_namespaces <= namespaces()
        second = ChaosNetwork([1, 2, 3])
        second.create()
        assert second.prefix != first.prefix
        assert second.address(1) != first.address(1) and second.host_address != first.host_address
        assert first_namespaces <= namespaces()  # building the second left the first alone
        # Both networks work at the same time: a node reaches its own run's host.
        for network in (first, second):
            with socket.create_server((network.host_address, 0)) as server:
                port = server.getsockname()[1]
                connect = f"import socket; socket.create_connection(({network.host_address!r}, {port}), 5)"
                done = subprocess.run(
                    [*network.launcher(2), sys.executable, "-c", connect], capture_output=True, text=True, timeout=30
                )
                assert done.returncode == 0, done.stderr
    finally:
        first.destroy()
        if second is not None:
            second.destroy()
    assert not first_namespaces & namespaces()


def test_a_slot_given_back_is_claimed_again_and_its_leftovers_removed():
    crashed = ChaosNetwork([1])
    crashed.create()
    leftover = crashed.namespace(1)
    crashed.slot.release()  # as if the run had died: its lock is gone, its namespaces are not
    assert leftover in namespaces()
    successor = ChaosNetwork([1])
    try:
        assert successor.prefix == crashed.prefix
        assert leftover not in namespaces()
    finally:
        successor.destroy()
