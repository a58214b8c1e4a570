"""The chaos checker: what was acknowledged against what the cluster serves afterwards. Pure.

A workload writes values that carry a sequence number (increasing per producer, and each
partition gets its records in sequence order), and remembers every acknowledgement as
(partition, offset, value). After the faults, the whole topic is read back. The verdict:

- lost: acknowledged values that are not served;
- duplicated: values served more than once (an idempotent producer must never cause one);
- moved: acknowledged values served at another partition or offset than acknowledged;
- reordered: places where a partition serves a lower sequence after a higher one;
- unacknowledged: values served that were never acknowledged (allowed: their answer was lost
  or they timed out after being written);
- vanished: records a consumer read while the faults went on that are no longer served at
  that offset (a consumer may only ever see committed records);
- divergent: offsets at which two replicas hold different records (from the files, once the
  cluster has converged);
- unacknowledged at end: records the producer had sent but got no answer for when the run
  stopped waiting (their fate is unknown, as for an unacknowledged value);
- not consumed by the group: acknowledged records that a consumer group (consuming throughout
  the faults, committing after each poll) had not processed when it stopped catching up;
- group commits back: places where a partition's committed offset went below an earlier one;
- group commits ahead: committed offsets beyond what the group had processed (a commit must
  only ever cover processed records, or a restart would skip some);
- problems: what kept the run from checking everything (a recovery wait that timed out, a
  read-back that could not finish, a replica's files that could not be read). Any problem
  fails the run, but the counts above are still given for what could be checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

VALUE_PREFIX = b"chaos-"


def make_value(sequence: int) -> bytes:
    return VALUE_PREFIX + b"%010d" % sequence


def sequence_of(value: bytes) -> int:
    if not value.startswith(VALUE_PREFIX):
        raise ValueError(f"not a workload value: {value[:40]!r}")
    return int(value[len(VALUE_PREFIX) :])


@dataclass(frozen=True)
class Ack:
    partition: int
    offset: int
    value: bytes


@dataclass
class Verdict:
    acknowledged: int = 0
    served: int = 0
    lost: list[bytes] = field(default_factory=list)
    duplicated: list[bytes] = field(default_factory=list)
    moved: list[tuple[bytes, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    reordered: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) going backwards
    unacknowledged: int = 0
    read_live: int = 0
    vanished: list[tuple[int, int, bytes]] = field(default_factory=list)  # (partition, offset, value)
    divergent: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)
    unacknowledged_at_end: int = 0
    group_processed: int = 0
    group_commits: int = 0
    not_consumed_by_group: list[bytes] = field(default_factory=list)
    group_commits_back: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, before, after)
    group_commits_ahead: list[tuple[int, int]] = field(default_factory=list)  # (partition, committed offset)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.moved
            or self.reordered
            or self.vanished
            or self.divergent
            or self.not_consumed_by_group
            or self.group_commits_back
            or self.group_commits_ahead
            or self.problems
        )

    def summary(self) -> str:
        text = (
            f"{self.acknowledged} acknowledged, {self.served} served: {len(self.lost)} lost, "
            f"{len(self.duplicated)} duplicated, {len(self.moved)} moved, {len(self.reordered)} reordered, "
            f"{len(self.vanished)} of {self.read_live} read during the faults vanished, "
            f"{len(self.divergent)} divergent replica offsets, {self.unacknowledged} served unacknowledged, "
            f"unacknowledged at end: {self.unacknowledged_at_end}; group: {self.group_processed} processed, "
            f"not consumed by the group: {len(self.not_consumed_by_group)}, {self.group_commits} commits, "
            f"{len(self.group_commits_back)} going back, {len(self.group_commits_ahead)} beyond what was processed"
        )
        if self.problems:
            text += f"; {len(self.problems)} problem(s): " + "; ".join(self.problems)
        return text


def check(
    acks: Iterable[Ack], served: dict[int, list[tuple[int, bytes]]], read_live: Iterable[tuple[int, int, bytes]] = ()
) -> Verdict:
    """served: partition -> [(offset, value)] in the order a consumer got them at the end;
    read_live: (partition, offset, value) a consumer got while the faults went on."""
    acks = list(acks)
    verdict = Verdict(acknowledged=len(acks))
    at = {(partition, offset): value for partition, records in served.items() for offset, value in records}
    for partition, offset, value in read_live:
        verdict.read_live += 1
        if at.get((partition, offset)) != value:
            verdict.vanished.append((partition, offset, value))
    where: dict[bytes, tuple[int, int]] = {}
    counts: Counter[bytes] = Counter()
    for partition, records in served.items():
        highest = -1
        for offset, value in records:
            verdict.served += 1
            counts[value] += 1
            where.setdefault(value, (partition, offset))
            sequence = sequence_of(value)
            if sequence < highest:
                verdict.reordered.append((partition, offset))
            highest = max(highest, sequence)
    verdict.duplicated = sorted(value for value, count in counts.items() if count > 1)
    acked_values = set()
    for ack in acks:
        acked_values.add(ack.value)
        found = where.get(ack.value)
        if found is None:
            verdict.lost.append(ack.value)
        elif found != (ack.partition, ack.offset):
            verdict.moved.append((ack.value, (ack.partition, ack.offset), found))
    verdict.unacknowledged = sum(1 for value in counts if value not in acked_values)
    return verdict


def check_group(
    verdict: Verdict,
    acks: Iterable[Ack],
    processed: Iterable[tuple[int, int, bytes]],
    commits: dict[int, list[int]],
) -> None:
    """Adds the consumer group's checks to verdict. processed: (partition, offset, value) the
    group's consumers handed to the application (repeats allowed: after a rebalance a
    partition is read again from its committed offset); commits: partition -> the offsets
    committed for it, in the order the commits succeeded (the next offset to read, as in Kafka)."""
    processed_values: set[bytes] = set()
    highest: dict[int, int] = {}
    for partition, offset, value in processed:
        verdict.group_processed += 1
        processed_values.add(value)
        highest[partition] = max(highest.get(partition, -1), offset)
    verdict.not_consumed_by_group = [ack.value for ack in acks if ack.value not in processed_values]
    for partition, offsets in sorted(commits.items()):
        previous = None
        for offset in offsets:
            verdict.group_commits += 1
            if previous is not None and offset < previous:
                verdict.group_commits_back.append((partition, previous, offset))
            if offset > highest.get(partition, -1) + 1:
                verdict.group_commits_ahead.append((partition, offset))
            previous = offset if previous is None else max(previous, offset)


def divergent_offsets(replicas: dict[int, dict[int, list[tuple[int, bytes]]]]) -> list[tuple[int, int]]:
    """replicas: node -> partition -> [(offset, value)] read from its files. Every replica of a
    converged partition must hold the same records at the same offsets, and all of them."""
    divergent: set[tuple[int, int]] = set()
    partitions = {p for by_partition in replicas.values() for p in by_partition}
    for partition in partitions:
        copies = [dict(by_partition[partition]) for by_partition in replicas.values() if partition in by_partition]
        offsets = set().union(*copies)
        for offset in offsets:
            if len({copy.get(offset) for copy in copies}) > 1:
                divergent.add((partition, offset))
    return sorted(divergent)
