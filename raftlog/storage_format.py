"""Stamping data directories with the cluster id and node id (like kafka-storage format).

Each directory a node writes to holds ``meta.properties``. A node refuses to start on a
directory stamped for another cluster or another node, so a misconfigured node cannot
join the wrong quorum or take over a neighbour's data.
"""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

from raftlog.durable_file import write_durable

META_FILE = "meta.properties"
META_VERSION = "1"
_CLUSTER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StorageError(RuntimeError):
    """A data directory that this node must not use; the message is one line."""


def random_cluster_id() -> str:
    """A 22-character URL-safe base64 UUID, the form Kafka uses."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def check_cluster_id(cluster_id: str) -> str:
    if not _CLUSTER_ID_PATTERN.match(cluster_id or ""):
        raise StorageError(f"cluster id {cluster_id!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return cluster_id


def read_meta(directory: Path) -> dict[str, str] | None:
    path = directory / META_FILE
    if not path.exists():
        return None
    meta = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            meta[name.strip()] = value.strip()
    return meta


def _write_meta(directory: Path, cluster_id: str, node_id: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = f"# written by raftlog storage format\nversion={META_VERSION}\ncluster.id={cluster_id}\nnode.id={node_id}\n"
    write_durable(directory / META_FILE, text)


def _check_stamp(directory: Path, meta: dict[str, str], cluster_id: str | None, node_id: int) -> str:
    stamped_cluster = meta.get("cluster.id", "")
    stamped_node = meta.get("node.id", "")
    if cluster_id is not None and stamped_cluster != cluster_id:
        raise StorageError(f"{directory} belongs to cluster {stamped_cluster!r}, not {cluster_id!r}")
    if stamped_node != str(node_id):
        raise StorageError(f"{directory} belongs to node {stamped_node}, not node {node_id}")
    return stamped_cluster


def format_dirs(directories: list[Path], cluster_id: str, node_id: int, ignore_formatted: bool = False) -> list[Path]:
    """Stamps every unformatted directory; returns the ones it stamped.

    A directory already stamped is an error unless ignore_formatted is set and the stamp matches.
    """
    check_cluster_id(cluster_id)
    stamped = []
    for directory in directories:
        meta = read_meta(directory)
        if meta is None:
            _write_meta(directory, cluster_id, node_id)
            stamped.append(directory)
            continue
        if not ignore_formatted:
            raise StorageError(f"{directory} is already formatted (use --ignore-formatted to skip it)")
        _check_stamp(directory, meta, cluster_id, node_id)
    return stamped


def verify_dirs(directories: list[Path], node_id: int, expected_cluster_id: str | None = None) -> str:
    """Checks that every directory is stamped for this node and one cluster; returns the cluster id."""
    cluster_id = expected_cluster_id
    for directory in directories:
        meta = read_meta(directory)
        if meta is None:
            raise StorageError(f"{directory} is not formatted; run `raftlog storage format` or use --format-if-empty")
        cluster_id = _check_stamp(directory, meta, cluster_id, node_id)
    assert cluster_id is not None
    return cluster_id
