"""`raftlog partitions reassign --generate|--execute|--verify|--cancel`: kafka-reassign-partitions.

The plan rules are pure (raftlog/client/reassignment_plan.py); this module reads the files, asks
the cluster, prints what Kafka's tool prints, and sets and clears the throttle configs. Every
check runs before anything is changed: a bad plan (malformed, an unknown topic, partition or
broker, duplicate replicas, a partition already moving) is one error line, exit 1, nothing set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.output import admin_call, emit, fail
from raftlog.client.reassignment_plan import (
    COMPLETE,
    IN_PROGRESS,
    Assignment,
    PartitionState,
    PlanError,
    moving,
    parse_plan,
    parse_topics_to_move,
    plan_document,
    plan_json,
    progress,
    propose,
    throttled_replicas,
)

LEADER_RATE = "leader.replication.throttled.rate"
FOLLOWER_RATE = "follower.replication.throttled.rate"
LEADER_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_REPLICAS = "follower.replication.throttled.replicas"


def _read(path: str, parse: Callable[[str], Any]) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        return parse(text)
    except PlanError as exc:
        fail(str(exc))


def _run(bootstrap_server: str, action: Callable[[Any], Any]) -> Any:
    def guarded(admin):
        try:
            return action(admin)
        except PlanError as exc:
            fail(str(exc))

    return admin_call(bootstrap_server, guarded)


def _states(admin, topics: list[str]) -> dict[tuple[str, int], PartitionState]:
    """Every partition of the topics as the cluster has it (UNKNOWN_TOPIC_OR_PARTITION if one is missing)."""
    states = {}
    for topic in admin.describe_topics(topics):
        for p in topic["partitions"]:
            states[(topic["topic"], p["partition"])] = PartitionState(
                tuple(p["replicas"]), tuple(p["adding_replicas"]), tuple(p["removing_replicas"])
            )
    return states


def _with_controller_progress(admin, states: dict[tuple[str, int], PartitionState]) -> None:
    """Moving or not, as the active controller has it (ListPartitionReassignments): the replicas
    come from any node's metadata, which may lag a change by a moment; whether a move is running
    decides what --verify and --cancel do, so it is asked of the controller."""
    moving_now = {(r["topic"], r["partition"]): r for r in admin.list_partition_reassignments(list(states))}
    for key, state in states.items():
        ongoing = moving_now.get(key)
        if ongoing is not None:
            states[key] = PartitionState(
                tuple(ongoing["replicas"]), tuple(ongoing["adding_replicas"]), tuple(ongoing["removing_replicas"])
            )
        elif state.adding or state.removing:  # this node's metadata is behind: the move is over
            states[key] = PartitionState(state.replicas, (), ())


def _registered(admin) -> set[int]:
    return {b["id"] for b in admin.describe_cluster()["brokers"]}


def _names(keys) -> str:
    return ",".join(f"{t}-{p}" for t, p in keys)


# -- --generate ---------------------------------------------------------------------------------


def generate(topics_file: str, broker_list: str, bootstrap_server: str, output_format: str) -> None:
    topics = _read(topics_file, parse_topics_to_move)
    try:
        brokers = [int(b) for b in broker_list.split(",") if b.strip()]
    except ValueError:
        fail(f"--broker-list {broker_list!r}: expected broker ids like 1,2,3")
    if len(set(brokers)) != len(brokers):
        fail(f"--broker-list {broker_list!r} names a broker more than once")

    def plan(admin) -> tuple[Assignment, Assignment]:
        unknown = sorted(set(brokers) - _registered(admin))
        if unknown:
            raise PlanError(f"UNKNOWN_BROKER: brokers {unknown} of --broker-list are not registered")
        states = _states(admin, topics)
        current = {key: list(state.replicas) for key, state in states.items()}
        return current, propose(current, brokers)

    current, proposed = _run(bootstrap_server, plan)
    emit(
        output_format,
        {"current": plan_document(current), "proposed": plan_document(proposed), "moving": _moving(current, proposed)},
        lambda _: (
            f"Current partition replica assignment\n{plan_json(current)}\n\n"
            f"Proposed partition reassignment configuration\n{plan_json(proposed)}"
        ),
    )


def _moving(current: Assignment, target: Assignment) -> list[str]:
    return [f"{t}-{p}" for t, p in moving(current, target)]


# -- --execute ----------------------------------------------------------------------------------


def _check_plan(plan: Assignment, states, registered: set[int]) -> None:
    unknown = [key for key in plan if key not in states]
    if unknown:
        raise PlanError(f"UNKNOWN_TOPIC_OR_PARTITION: no such partition: {_names(unknown)}")
    for (topic, index), replicas in sorted(plan.items()):
        missing = sorted(set(replicas) - registered)
        if missing:
            raise PlanError(f"UNKNOWN_BROKER: {topic}-{index}: brokers {missing} are not registered")
    running = [key for key in sorted(plan) if states[key].adding or states[key].removing]
    if running:
        raise PlanError(
            f"REASSIGNMENT_IN_PROGRESS: {_names(running)} are being reassigned already "
            "(see `partitions list-reassignments`; --cancel or --verify that plan first)"
        )


def execute(plan_file: str, throttle: int | None, bootstrap_server: str, output_format: str) -> None:
    plan = _read(plan_file, parse_plan)

    def start(admin) -> dict[str, Any]:
        states = _states(admin, sorted({t for t, _ in plan}))
        _check_plan(plan, states, _registered(admin))
        current = {key: list(states[key].replicas) for key in plan}
        admin.alter_partition_reassignments(dict(plan), validate_only=True)  # the controller's checks too
        if throttle is not None:
            _set_throttles(admin, current, plan, throttle)
        admin.alter_partition_reassignments(dict(plan))
        return {"current": plan_document(current), "started": _names(sorted(plan)), "throttle_bytes_per_s": throttle}

    result = _run(bootstrap_server, start)

    def text(r) -> str:
        lines = [
            "Current partition replica assignment",
            "",
            plan_json({(p["topic"], p["partition"]): p["replicas"] for p in r["current"]["partitions"]}),
            "",
            "Save this to use as the --reassignment-json-file option during rollback",
        ]
        if throttle is not None:
            lines += [
                "Warning: You must run --verify periodically, until the reassignment completes, to ensure the "
                "throttle is removed.",
                f"The inter-broker throttle limit was set to {throttle} B/s",
            ]
        lines.append(f"Successfully started partition reassignments for {r['started']}")
        return "\n".join(lines)

    emit(output_format, result, text)


def _set_throttles(admin, current: Assignment, plan: Assignment, throttle: int) -> None:
    """Kafka's: the topics' throttled replicas, and the rate on every broker of a moving partition."""
    for topic, (leader, follower) in sorted(throttled_replicas(current, plan).items()):
        admin.alter_configs("topics", topic, set_configs={LEADER_REPLICAS: leader, FOLLOWER_REPLICAS: follower})
    brokers = sorted({b for key in moving(current, plan) for b in current[key] + plan[key]})
    for broker in brokers:
        admin.alter_configs(
            "brokers", str(broker), set_configs={LEADER_RATE: str(throttle), FOLLOWER_RATE: str(throttle)}
        )


def _clear_throttles(admin, topics: list[str]) -> dict[str, list]:
    """Kafka's --verify/--cancel: the throttle configs leave every broker and the plan's topics."""
    cleared: dict[str, list] = {"brokers": [], "topics": []}
    for broker in sorted(_registered(admin)):
        names = {c["name"] for c in admin.describe_configs("brokers", str(broker))}
        present = [n for n in (LEADER_RATE, FOLLOWER_RATE) if n in names]
        if present:
            admin.alter_configs("brokers", str(broker), delete_configs=present)
            cleared["brokers"].append(broker)
    for topic in topics:
        names = {c["name"] for c in admin.describe_configs("topics", topic)}
        present = [n for n in (LEADER_REPLICAS, FOLLOWER_REPLICAS) if n in names]
        if present:
            admin.alter_configs("topics", topic, delete_configs=present)
            cleared["topics"].append(topic)
    return cleared


def _cleared_text(cleared: dict[str, list] | None) -> list[str]:
    if not cleared:
        return []
    lines = []
    if cleared["brokers"]:
        lines.append(f"Clearing broker-level throttles on brokers {','.join(map(str, cleared['brokers']))}")
    for topic in cleared["topics"]:
        lines.append(f"Clearing topic-level throttles on topic {topic}")
    return lines


# -- --verify and --cancel ----------------------------------------------------------------------


def verify(plan_file: str, preserve_throttles: bool, bootstrap_server: str, output_format: str) -> None:
    plan = _read(plan_file, parse_plan)

    def check(admin) -> dict[str, Any]:
        topics = sorted({t for t, _ in plan})
        states = _states(admin, topics)
        unknown = [key for key in plan if key not in states]
        if unknown:
            raise PlanError(f"UNKNOWN_TOPIC_OR_PARTITION: no such partition: {_names(unknown)}")
        _with_controller_progress(admin, states)
        status = progress(plan, states)
        done = all(s == COMPLETE for s, _ in status.values())
        running = any(s == IN_PROGRESS for s, _ in status.values())
        cleared = _clear_throttles(admin, topics) if not running and not preserve_throttles else None
        return {
            "partitions": [
                {"topic": t, "partition": p, "status": s, "replicas": replicas, "target": plan[(t, p)]}
                for (t, p), (s, replicas) in status.items()
            ],
            "complete": done,
            "throttles_cleared": cleared,
        }

    result = _run(bootstrap_server, check)

    def text(r) -> str:
        lines = ["Status of partition reassignment:"]
        for p in r["partitions"]:
            name = f"{p['topic']}-{p['partition']}"
            if p["status"] == COMPLETE:
                lines.append(f"Reassignment of partition {name} is complete.")
            elif p["status"] == IN_PROGRESS:
                lines.append(f"Reassignment of partition {name} is still in progress.")
            else:
                lines.append(
                    f"There is no active reassignment of partition {name}, but replica set is "
                    f"{p['replicas']} rather than {p['target']}."
                )
        return "\n".join(lines + [""] + _cleared_text(r["throttles_cleared"])).rstrip()

    emit(output_format, result, text)


def cancel(plan_file: str, preserve_throttles: bool, bootstrap_server: str, output_format: str) -> None:
    plan = _read(plan_file, parse_plan)

    def revert(admin) -> dict[str, Any]:
        topics = sorted({t for t, _ in plan})
        states = _states(admin, topics)
        unknown = [key for key in plan if key not in states]
        if unknown:
            raise PlanError(f"UNKNOWN_TOPIC_OR_PARTITION: no such partition: {_names(unknown)}")
        _with_controller_progress(admin, states)
        running = [key for key in sorted(plan) if states[key].adding or states[key].removing]
        if running:
            admin.alter_partition_reassignments(dict.fromkeys(running))
        cleared = None if preserve_throttles else _clear_throttles(admin, topics)
        return {"cancelled": _names(running), "throttles_cleared": cleared}

    result = _run(bootstrap_server, revert)

    def text(r) -> str:
        if r["cancelled"]:
            lines = [f"Successfully cancelled partition reassignments for: {r['cancelled']}"]
        else:
            lines = ["None of the specified partition reassignments are active."]
        return "\n".join(lines + _cleared_text(r["throttles_cleared"]))

    emit(output_format, result, text)
