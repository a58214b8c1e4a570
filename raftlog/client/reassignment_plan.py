"""Reassignment plans in kafka-reassign-partitions' JSON, the planner behind `--generate`, and the
throttle and progress rules of `--execute` / `--verify`. Pure: no I/O, no client calls.

Formats (Kafka's):
- topics to move: {"version": 1, "topics": [{"topic": "foo"}, ...]}
- a plan: {"version": 1, "partitions": [{"topic": "foo", "partition": 0, "replicas": [1, 2],
  "log_dirs": ["any", "any"]}, ...]} (log_dirs optional; only "any": one log dir is chosen by
  the broker, intra-broker moves are not supported).

The planner (`propose`) moves as little as it must: a replica already on a listed broker stays;
a replica on a broker not listed goes to the listed broker holding the fewest replicas of the
planned topics; then, while one listed broker holds two or more replicas more than another,
one replica moves from the fullest to the emptiest (so a broker added to the list takes its
share); finally the preferred leader (the first replica) of a partition is kept unless its
broker already leads its share (ceil(partitions / brokers)), in which case the replica whose
broker leads fewest goes first: leaders stay spread. Partitions that keep their leader claim
their share first, so leaderships change on the partitions that move anyway. Kafka's tool instead places every
partition afresh, moving much more than needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PartitionKey = tuple[str, int]
Assignment = dict[PartitionKey, list[int]]
PLAN_VERSION = 1
ANY_LOG_DIR = "any"


class PlanError(ValueError):
    """A plan or topic file that cannot be used; the message is one line for the operator."""


def _load(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{what} must be a JSON object")
    version = data.get("version", PLAN_VERSION)
    if version != PLAN_VERSION:
        raise PlanError(f"{what}: version {version!r} is not supported (only {PLAN_VERSION})")
    return data


def parse_topics_to_move(text: str) -> list[str]:
    data = _load(text, "the topics-to-move file")
    topics = data.get("topics")
    if not isinstance(topics, list) or not topics:
        raise PlanError('the topics-to-move file needs "topics": [{"topic": "name"}, ...]')
    names = []
    for entry in topics:
        name = entry.get("topic") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise PlanError(f'every entry of "topics" needs a "topic" name, not {entry!r}')
        if name in names:
            raise PlanError(f"topic {name!r} is listed twice")
        names.append(name)
    return names


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_plan(text: str) -> Assignment:
    """A plan file -> (topic, partition) -> target replicas, every entry checked."""
    data = _load(text, "the reassignment file")
    partitions = data.get("partitions")
    if not isinstance(partitions, list) or not partitions:
        raise PlanError('the reassignment file needs "partitions": [{"topic", "partition", "replicas"}, ...]')
    plan: Assignment = {}
    for entry in partitions:
        if not isinstance(entry, dict):
            raise PlanError(f"a partition entry must be an object, not {entry!r}")
        topic, index, replicas = entry.get("topic"), entry.get("partition"), entry.get("replicas")
        if not isinstance(topic, str) or not topic:
            raise PlanError(f'an entry has no "topic" name: {entry!r}')
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise PlanError(f'{topic}: "partition" must be an integer >= 0, not {index!r}')
        name = f"{topic}-{index}"
        if not isinstance(replicas, list) or not replicas or not all(_int(r) and r >= 0 for r in replicas):
            raise PlanError(f'{name}: "replicas" must be a non-empty list of broker ids, not {replicas!r}')
        if len(set(replicas)) != len(replicas):
            raise PlanError(f"{name}: replicas {replicas} name a broker more than once")
        log_dirs = entry.get("log_dirs", [ANY_LOG_DIR] * len(replicas))
        if not isinstance(log_dirs, list) or len(log_dirs) != len(replicas):
            raise PlanError(f'{name}: "log_dirs" must have one entry per replica')
        if any(d != ANY_LOG_DIR for d in log_dirs):
            raise PlanError(f'{name}: log dirs other than "any" are not supported (a broker picks the log dir)')
        if (topic, index) in plan:
            raise PlanError(f"{name} appears more than once")
        plan[(topic, index)] = list(replicas)
    return plan


def plan_document(assignment: Mapping[PartitionKey, list[int]]) -> dict[str, Any]:
    return {
        "version": PLAN_VERSION,
        "partitions": [
            {
                "topic": topic,
                "partition": index,
                "replicas": list(replicas),
                "log_dirs": [ANY_LOG_DIR] * len(replicas),
            }
            for (topic, index), replicas in sorted(assignment.items())
        ],
    }


def plan_json(assignment: Mapping[PartitionKey, list[int]]) -> str:
    """One line, as Kafka's tool prints a plan (ready to save to a file)."""
    return json.dumps(plan_document(assignment), separators=(",", ":"))


def propose(current: Mapping[PartitionKey, list[int]], brokers: list[int]) -> Assignment:
    """A target for every partition of `current` on `brokers` only (see the module docstring)."""
    listed = sorted(set(brokers))
    if not listed:
        raise PlanError("--broker-list names no broker")
    for (topic, index), replicas in sorted(current.items()):
        if len(replicas) > len(listed):
            raise PlanError(
                f"{topic}-{index} has {len(replicas)} replicas but --broker-list names only {len(listed)} brokers"
            )
    load = dict.fromkeys(listed, 0)
    plan: Assignment = {}
    for key, replicas in sorted(current.items()):
        plan[key] = [r for r in replicas if r in load]
        for r in plan[key]:
            load[r] += 1
    for key in sorted(current):  # replicas on brokers not listed go to the emptiest listed ones
        while len(plan[key]) < len(current[key]):
            target = min((b for b in listed if b not in plan[key]), key=lambda b: (load[b], b))
            plan[key].append(target)
            load[target] += 1
    _even_out(plan, load)
    _spread_leaders(plan, listed, current)
    for key, replicas in plan.items():
        assert len(replicas) == len(current[key]) and len(set(replicas)) == len(replicas), (
            f"{key}: the plan {replicas} must keep the replication factor of {current[key]} with distinct brokers"
        )
        assert set(replicas) <= set(listed), f"{key}: the plan {replicas} uses brokers outside {listed}"
    return plan


def _even_out(plan: Assignment, load: dict[int, int]) -> None:
    """Moves one replica at a time from the fullest broker to the emptiest while they differ by 2+."""
    for _ in range(sum(load.values())):  # each move lowers the spread; bounded all the same
        fullest = max(load, key=lambda b: (load[b], -b))
        emptiest = min(load, key=lambda b: (load[b], b))
        if load[fullest] - load[emptiest] <= 1:
            return
        candidates = [key for key in sorted(plan) if fullest in plan[key] and emptiest not in plan[key]]
        if not candidates:
            return
        # A follower replica moves before a preferred leader, when there is a choice.
        key = min(candidates, key=lambda k: plan[k][0] == fullest)
        replicas = plan[key]
        replicas[replicas.index(fullest)] = emptiest
        load[fullest] -= 1
        load[emptiest] += 1


def _spread_leaders(plan: Assignment, brokers: list[int], current: Mapping[PartitionKey, list[int]]) -> None:
    """Partitions that keep their preferred leader claim it first (within its broker's share), so
    leadership changes fall on the partitions that move anyway."""
    share = math.ceil(len(plan) / len(brokers))
    leads = dict.fromkeys(brokers, 0)
    pending = []
    for key in sorted(plan):
        first = plan[key][0]
        if first == current[key][0] and leads[first] < share:
            leads[first] += 1
        else:
            pending.append(key)
    for key in pending:
        replicas = plan[key]
        if leads[replicas[0]] >= share:
            best = min(replicas, key=lambda b: (leads[b], replicas.index(b)))
            replicas.remove(best)
            replicas.insert(0, best)
        leads[replicas[0]] += 1


def moving(current: Mapping[PartitionKey, list[int]], target: Mapping[PartitionKey, list[int]]) -> list[PartitionKey]:
    """Partitions whose replica set changes (a reorder alone moves no data)."""
    return [key for key in sorted(target) if set(target[key]) != set(current.get(key, target[key]))]


def throttled_replicas(
    current: Mapping[PartitionKey, list[int]], target: Mapping[PartitionKey, list[int]]
) -> dict[str, tuple[str, str]]:
    """topic -> (leader.replication.throttled.replicas, follower.replication.throttled.replicas), as
    Kafka's tool sets them: every current replica of a moving partition may lead the move (leader
    side), every replica being added is the one catching up (follower side)."""
    leader: dict[str, list[str]] = {}
    follower: dict[str, list[str]] = {}
    for topic, index in moving(current, target):
        old, new = current[(topic, index)], target[(topic, index)]
        leader.setdefault(topic, []).extend(f"{index}:{b}" for b in old)
        follower.setdefault(topic, []).extend(f"{index}:{b}" for b in new if b not in old)
    return {topic: (",".join(leader[topic]), ",".join(follower.get(topic, []))) for topic in leader}


@dataclass(frozen=True, slots=True)
class PartitionState:
    replicas: tuple[int, ...]
    adding: tuple[int, ...]
    removing: tuple[int, ...]


COMPLETE = "complete"
IN_PROGRESS = "in progress"
DIFFERENT = "not as planned"


def progress(target: Mapping[PartitionKey, list[int]], states: Mapping[PartitionKey, PartitionState]) -> dict:
    """(topic, partition) -> (status, current replicas) for every partition of a plan."""
    result = {}
    for key, replicas in sorted(target.items()):
        state = states[key]
        if state.adding or state.removing:
            status = IN_PROGRESS
        elif list(state.replicas) == list(replicas):
            status = COMPLETE
        else:
            status = DIFFERENT
        result[key] = (status, list(state.replicas))
    return result
