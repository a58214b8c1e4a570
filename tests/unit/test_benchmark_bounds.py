"""AdminService.BenchmarkQuorum (`raftlog perf quorum`) refuses out-of-range requests before any work."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from raftlog.api.admin_service import AdminServicer
from raftlog.api.authorization import RequestAuthorizer
from raftlog.authorizer.authorizer import AuthorizerSettings
from raftlog.errors import REASON_METADATA_KEY
from raftlog.limits import MAX_BENCHMARK_CONCURRENCY, MAX_BENCHMARK_PAYLOAD_BYTES
from raftlog.raft.driver import RaftStatus
from raftlog.v1 import admin_pb2


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.code = self.details = self.metadata = None

    async def abort(self, code, details, trailing_metadata=()):
        self.code, self.details, self.metadata = code, details, dict(trailing_metadata)
        raise Aborted()

    def invocation_metadata(self):
        return ()


class NoLeaderDriver:
    """A node that knows no controller: a request that passes validation ends in NOT_CONTROLLER."""

    def status(self) -> RaftStatus:
        return RaftStatus(
            node_id=0,
            role="Follower",
            term=1,
            leader_id=None,
            commit_index=0,
            applied_index=0,
            last_index=0,
            last_log_term=0,
            snapshot_index=0,
        )


def benchmark(count: int, concurrency: int, payload_bytes: int) -> FakeContext:
    servicer = AdminServicer("c", None, NoLeaderDriver(), None, None, RequestAuthorizer(AuthorizerSettings(), None))
    context = FakeContext()
    request = admin_pb2.BenchmarkQuorumRequest(count=count, concurrency=concurrency, payload_bytes=payload_bytes)
    with pytest.raises(Aborted):
        asyncio.run(servicer.BenchmarkQuorum(request, context))
    return context


@pytest.mark.parametrize(
    "count, concurrency, payload_bytes, problem",
    [
        (10, MAX_BENCHMARK_CONCURRENCY + 1, 64, "concurrency must be 1..1024, got 1025"),
        (10, 0, 64, "concurrency must be 1..1024, got 0"),
        (10, 8, MAX_BENCHMARK_PAYLOAD_BYTES + 1, "payload_bytes must be 0..1048576, got 1048577"),
        (10, 8, -1, "payload_bytes must be 0..1048576, got -1"),
        (0, 8, 64, "count must be 1..1000000, got 0"),
    ],
)
def test_out_of_range_benchmarks_are_invalid_requests(count, concurrency, payload_bytes, problem):
    context = benchmark(count, concurrency, payload_bytes)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details == f"INVALID_REQUEST: {problem}"
    assert context.metadata[REASON_METADATA_KEY] == "INVALID_REQUEST"


def test_the_largest_allowed_benchmark_passes_validation():
    context = benchmark(10, MAX_BENCHMARK_CONCURRENCY, MAX_BENCHMARK_PAYLOAD_BYTES)
    assert context.metadata[REASON_METADATA_KEY] == "NOT_CONTROLLER"
