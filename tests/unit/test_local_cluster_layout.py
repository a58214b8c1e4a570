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


def test_dedicated_controllers_are_the_only_voters_and_clients_bootstrap_from_the_brokers(tmp_path):
    cluster = LocalCluster(
        tmp_path, nodes=5, controllers=3, base_port=19091, metrics_base_port=0, kafka_base_port=19891
    )
    assert cluster.controller_ids == [1, 2, 3] and cluster.broker_ids == [4, 5]
    assert cluster.bootstrap_servers == "127.0.0.1:19094,127.0.0.1:19095"
    assert cluster.kafka_bootstrap_servers == "127.0.0.1:19894,127.0.0.1:19895", "controllers get no Kafka listener"
    cluster.check_configs()
    voters = '"1@127.0.0.1:19091,2@127.0.0.1:19092,3@127.0.0.1:19093"'
    controller, broker = cluster.specs[1].config_path.read_text(), cluster.specs[4].config_path.read_text()
    assert '"process.roles" = "controller"' in controller and voters in controller
    assert '"process.roles" = "broker"' in broker and voters in broker
    with pytest.raises(ClusterLayoutError, match="3 controllers and 2 brokers"):
        LocalCluster(tmp_path, nodes=5, base_port=19091, metrics_base_port=0)
    with pytest.raises(ClusterLayoutError, match="at least one broker"):
        LocalCluster(tmp_path / "other", nodes=3, controllers=3, base_port=19091)
