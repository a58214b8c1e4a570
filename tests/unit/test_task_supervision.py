"""Task lifetime: a failed critical loop stops the node loudly; survivable loops are counted.

The end-to-end case runs `raftlog node start` in this process (one voter, so it elects itself at
once) with a metadata state machine that fails on its first record: before the supervisor, the
Raft Ready loop died silently and the node went on serving and reporting SERVING for good.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from click.testing import CliRunner

from raftlog.metadata.state_machine import MetadataDivergenceError, MetadataStateMachine
from raftlog.tasks import TaskSupervisor


def test_a_failed_critical_task_is_the_nodes_failure():
    async def scenario():
        supervisor = TaskSupervisor()

        async def broken():
            await asyncio.sleep(0)
            raise ValueError("disk on fire")

        supervisor.spawn(broken(), name="raft-ready", critical=True)
        reason = await asyncio.wait_for(supervisor.wait_failed(), 30)
        await supervisor.stop()
        return reason

    assert asyncio.run(scenario()) == "task raft-ready failed: ValueError: disk on fire"


def test_a_critical_task_that_returns_while_running_is_a_failure_but_not_during_shutdown():
    async def scenario():
        running, stopping = TaskSupervisor(), TaskSupervisor()

        async def done():
            return None

        running.spawn(done(), name="raft-tick", critical=True)
        reason = await asyncio.wait_for(running.wait_failed(), 30)
        stopping.shutdown_started()
        await asyncio.gather(stopping.spawn(done(), name="raft-tick", critical=True))
        await asyncio.sleep(0)
        return reason, stopping.failure

    reason, failure_during_shutdown = asyncio.run(scenario())
    assert reason == "task raft-tick ended while the node was running"
    assert failure_during_shutdown is None


def test_survivable_errors_are_counted_and_cancellation_is_no_failure():
    counted: list[str] = []

    async def scenario():
        supervisor = TaskSupervisor(count_error=counted.append)

        async def flaky():
            raise OSError("one bad round")

        async def forever():
            await asyncio.Event().wait()

        supervisor.spawn(flaky(), name="replica-isr", critical=False)
        supervisor.spawn(forever(), name="raft-tick", critical=True)
        for _ in range(10):
            await asyncio.sleep(0)
        await supervisor.stop()
        return supervisor.failure

    assert asyncio.run(scenario()) is None
    assert counted == ["replica-isr"]


def test_an_undecodable_committed_entry_is_a_divergence_not_a_warning():
    state_machine = MetadataStateMachine()
    try:
        state_machine.apply(7, 2, b"\xff\xff not a metadata batch")
    except MetadataDivergenceError as exc:
        assert "entry 7 (term 2)" in str(exc)
    else:
        raise AssertionError("a committed entry that cannot be decoded was skipped")
    assert state_machine.image.offset != 7


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(300)
def test_node_whose_raft_loop_dies_exits_non_zero_with_one_line_reason(tmp_path, monkeypatch):
    from cli.main import cli as main

    def failing_apply(self, index, term, data):
        raise RuntimeError("listener exploded")

    monkeypatch.setattr(MetadataStateMachine, "apply", failing_apply)
    port = _free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        f'"node.id" = 1\n"controller.quorum.voters" = "1@127.0.0.1:{port}"\n'
        f'"log.dirs" = "{tmp_path / "data"}"\n"cluster.id" = "MkU3OEVBNTcwNTJENDM2Qg"\n'
        '"shutdown.timeout.ms" = 2000\n'
    )
    # In the main thread (signal handlers); a zombie node would run until the test's timeout.
    result = CliRunner().invoke(main, ["node", "start", "--config", str(config), "--format-if-empty"])
    assert result.exit_code != 0
    last_line = result.output.strip().splitlines()[-1]
    assert "node 1 stopped: task raft-ready failed: RuntimeError: listener exploded" in last_line


def test_a_scrubber_turned_off_does_not_stop_the_node():
    """log.scrub.bytes.per.second=0 turns the scrubber off: its loop must not end (ending a
    critical loop stops the node; every node exited at start with the scrubber off)."""
    from tests.unit.replica_manager_harness import FakeStateMachine, make_manager

    async def scenario():
        manager = make_manager(1, FakeStateMachine(), environ={"RAFTLOG_LOG_SCRUB_BYTES_PER_SECOND": "0"})
        manager.supervisor.spawn(manager._scrub_loop(), name="log-scrubber", critical=True)
        for _ in range(20):
            await asyncio.sleep(0)
        failure = manager.supervisor.failure
        await manager.supervisor.stop()
        return failure

    assert asyncio.run(scenario()) is None
