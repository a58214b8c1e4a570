"""The container tests drive the chaos suite's workload (chaos/workload.py: an acks=all idempotent
producer that remembers every acknowledgement with its send and acknowledgement times) and read a
topic back with its read_topic; a read-back that cannot finish fails the test."""

from __future__ import annotations

from chaos.workload import Workload, read_topic

__all__ = ["Workload", "read_back"]


def read_back(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[int, bytes]]]:
    """partition -> [(offset, value)], everything up to each partition's high watermark now."""
    served, problem = read_topic(bootstrap, topic, partitions)
    assert problem is None, problem
    return served
