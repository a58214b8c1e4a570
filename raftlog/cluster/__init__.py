"""A local cluster of real node processes on loopback, for development, tests and benchmarks."""

from raftlog.cluster.local import ClusterLayoutError, LocalCluster

__all__ = ["ClusterLayoutError", "LocalCluster"]
