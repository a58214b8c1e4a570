"""LocalCluster's layout (no processes): node numbering, ports, and the remembered layout."""

from __future__ import annotations

import json

import pytest

from raftlog.cluster.local import ClusterLayoutError, LocalCluster


def test_nodes_numbered_from_0_keep_the_same_ports(tmp_path):
    cluster = LocalCluster(tmp_path, nodes=3, base_port=19091, metrics_base_port=0, first_node_id=0)
    assert {i: s.port for i, s in cluster.specs.items()} == {0: 19091, 1: 19092, 2: 19093}
    assert cluster.bootstrap_servers == "127.0.0.1:19091,127.0.0.1:19092,127.0.0.1:19093"
    cluster._write_config(cluster.specs[0])
    config = cluster.specs[0].config_path.read_text()
    assert '"node.id" = 0' in config and '"0@127.0.0.1:19091,1@127.0.0.1:19092,2@127.0.0.1:19093"' in config
    with pytest.raises(ClusterLayoutError, match="ids from 0"):
        LocalCluster(tmp_path, nodes=3, base_port=19091, metrics_base_port=0)


def test_a_layout_written_before_first_node_id_numbers_from_1(tmp_path):
    (tmp_path / "cluster.json").write_text(json.dumps({"cluster_id": "old", "nodes": 3, "base_port": 19091}))
    cluster = LocalCluster(tmp_path, nodes=3, base_port=19091, metrics_base_port=0)
    assert cluster.cluster_id == "old" and sorted(cluster.specs) == [1, 2, 3]
