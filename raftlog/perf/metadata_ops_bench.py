"""Client-visible metadata writes with many in flight, for `raftlog perf quorum`.

AlterConfigs requests (a dynamic broker config, a different value each time) go straight to
the active controller from worker processes, each with its share of the calls in flight on one
asyncio gRPC channel. Measured: ops/s, latency p50/p99/max as the client sees it, and the
server CPU per operation (user + system time of the cluster's node processes, from
/proc/<pid>/stat before and after). Beside the load, a prober sends a broker heartbeat (as
the broker itself would, for a registered broker with its current epoch) every few
milliseconds and records how long each one takes to be answered: a heartbeat that waits
behind admin requests shows here.

A call refused with a retriable error of the call (NOT_CONTROLLER while the controller that
just won its election activates) is retried after the Admin client's backoff, as an Admin
would, and counts once, with its retries in its latency; only calls that fail for good count
as errors (a worker burning its share on instant refusals would otherwise halve the load).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from raftlog.channels import aio_channel, error_from_rpc
from raftlog.client.connection import retried_by_admin
from raftlog.limits import ADMIN_RETRY_BACKOFF_S
from raftlog.perf.stats import percentile
from raftlog.v1 import admin_pb2, admin_pb2_grpc, controller_pb2, controller_pb2_grpc

HEARTBEAT_PROBE_INTERVAL_S = 0.01
CALL_TIMEOUT_S = 30.0
CONFIG_NAME = "log.retention.hours"
MAX_ATTEMPTS = 50  # per call: retriable refusals for 5 s at the Admin's backoff, then an error


@dataclass
class MetadataOpsResult:
    in_flight: int = 0
    ops: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    heartbeat_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "in_flight": self.in_flight,
            "ops": self.ops,
            "errors": self.errors,
            "ops_per_s": round(self.ops / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": round(percentile(self.latencies_ms, 0.50), 3),
            "p99_ms": round(percentile(self.latencies_ms, 0.99), 3),
            "max_ms": round(max(self.latencies_ms, default=0.0), 3),
            "server_cpu_us_per_op": round(self.server_cpu_s * 1e6 / self.ops, 1) if self.ops else 0.0,
            "heartbeats": len(self.heartbeat_ms),
            "heartbeat_p99_ms": round(percentile(self.heartbeat_ms, 0.99), 3),
            "heartbeat_max_ms": round(max(self.heartbeat_ms, default=0.0), 3),
        }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_alter_configs(
    leader_address: str,
    server_pids: list[int],
    heartbeat: controller_pb2.BrokerHeartbeatRequest,
    ops: int,
    in_flight: int,
    client_processes: int = 2,
) -> MetadataOpsResult:
    """`ops` AlterConfigs with `in_flight` outstanding, spread over `client_processes` workers."""
    assert ops >= in_flight >= 1 and client_processes >= 1, (ops, in_flight, client_processes)
    workers = min(client_processes, in_flight)
    shares = [
        (in_flight // workers + (w < in_flight % workers), ops // workers + (w < ops % workers)) for w in range(workers)
    ]
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    heartbeat_ms: list[float] = []
    prober = threading.Thread(target=lambda: heartbeat_ms.extend(asyncio.run(_probe(leader_address, heartbeat, stop))))
    with context.Pool(workers) as pool:
        pool.apply(time.sleep, (0,))  # the workers are up before the clock starts
        cpu_before = sum(process_cpu_s(pid) for pid in server_pids)
        started = time.perf_counter()
        prober.start()
        outcomes = pool.starmap(_worker, [(leader_address, n, count, w) for w, (n, count) in enumerate(shares)])
        elapsed_s = time.perf_counter() - started
        cpu_after = sum(process_cpu_s(pid) for pid in server_pids)
        stop.set()
        prober.join()
    result = MetadataOpsResult(in_flight=in_flight, elapsed_s=elapsed_s, server_cpu_s=cpu_after - cpu_before)
    for latencies_ms, errors in outcomes:
        result.latencies_ms += latencies_ms
        result.errors += errors
    result.ops = len(result.latencies_ms)
    result.heartbeat_ms = heartbeat_ms
    return result


def _worker(address: str, in_flight: int, ops: int, worker: int) -> tuple[list[float], int]:
    return asyncio.run(_alter_configs(address, in_flight, ops, worker))


async def _alter_configs(address: str, in_flight: int, ops: int, worker: int) -> tuple[list[float], int]:
    latencies_ms: list[float] = []
    errors = 0
    remaining = iter(range(ops))
    async with aio_channel(address) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)

        async def one_at_a_time() -> None:
            nonlocal errors
            for i in remaining:
                request = admin_pb2.IncrementalAlterConfigsRequest(
                    resource=admin_pb2.ConfigResource(type="brokers", name=""),
                    ops=[
                        admin_pb2.AlterConfigOp(
                            name=CONFIG_NAME, op=admin_pb2.AlterConfigOp.SET, value=str(100 + (i + worker) % 500)
                        )
                    ],
                )
                started = time.perf_counter()
                if await _call_retrying(stub, request):
                    latencies_ms.append((time.perf_counter() - started) * 1000.0)
                else:
                    errors += 1

        await asyncio.gather(*(one_at_a_time() for _ in range(in_flight)))
    return latencies_ms, errors


async def _call_retrying(stub: admin_pb2_grpc.AdminServiceStub, request) -> bool:
    """True once the call succeeds; False when it fails for good or MAX_ATTEMPTS run out."""
    for _ in range(MAX_ATTEMPTS):
        try:
            await stub.IncrementalAlterConfigs(request, timeout=CALL_TIMEOUT_S)
            return True
        except grpc.RpcError as exc:
            if not retried_by_admin(error_from_rpc(exc)):
                return False
        await asyncio.sleep(ADMIN_RETRY_BACKOFF_S)
    return False


async def _probe(address: str, request: controller_pb2.BrokerHeartbeatRequest, stop: threading.Event) -> list[float]:
    latencies_ms: list[float] = []
    async with aio_channel(address) as channel:
        stub = controller_pb2_grpc.ControllerServiceStub(channel)
        unanswered_since: float | None = None
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await stub.BrokerHeartbeat(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                unanswered_since = unanswered_since or started  # counted in the next answer's wait
            else:
                latencies_ms.append((time.perf_counter() - (unanswered_since or started)) * 1000.0)
                unanswered_since = None
            await asyncio.sleep(HEARTBEAT_PROBE_INTERVAL_S)
    return latencies_ms
