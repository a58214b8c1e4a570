"""Prometheus metrics of one node (prometheus-client), served over HTTP on metrics.port."""

from raftlog.metrics.registry import NodeMetrics

__all__ = ["NodeMetrics"]
