"""Server-side partition assignors of consumer groups (KIP-848): ``uniform`` (sticky) and ``range``.

Pure: an assignor maps the members' subscriptions, the subscribed topics' partition counts and
the current target assignment to a new target assignment. Nothing here knows about epochs or
reconciliation (``raftlog.groups.group`` hands partitions over); the assignors only decide who
should own what.

- ``uniform``: partition counts of members differ by at most one when every member subscribes to
  the same topics; sticky: a member keeps what it owns up to its share, so a join moves only the
  newcomer's share and a leave moves only the leaver's partitions. With differing subscriptions
  it keeps what is still valid, places the rest on the least loaded eligible member and then
  moves partitions one at a time from a member to one with at least two fewer.
- ``range``: per topic, the members subscribed to it (by member id) get consecutive ranges, the
  first ``partitions % members`` of them one more; deterministic, not sticky (Kafka's range).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

TopicPartition = tuple[str, int]
Assignment = dict[str, frozenset[TopicPartition]]

# A bound on the rebalancing moves of the non-uniform case: each move lowers the spread of
# partition counts, so this many is never reached by a correct run (asserted).
_MAX_BALANCE_MOVES_PER_PARTITION = 4


class Assignor(Protocol):
    name: str

    def assign(
        self,
        subscriptions: Mapping[str, frozenset[str]],
        partitions_per_topic: Mapping[str, int],
        current: Mapping[str, frozenset[TopicPartition]],
    ) -> Assignment: ...


def _subscribed_partitions(
    subscriptions: Mapping[str, frozenset[str]], partitions_per_topic: Mapping[str, int]
) -> list[TopicPartition]:
    topics = sorted({t for topics in subscriptions.values() for t in topics if t in partitions_per_topic})
    return [(t, p) for t in topics for p in range(partitions_per_topic[t])]


class UniformAssignor:
    name = "uniform"

    def assign(
        self,
        subscriptions: Mapping[str, frozenset[str]],
        partitions_per_topic: Mapping[str, int],
        current: Mapping[str, frozenset[TopicPartition]],
    ) -> Assignment:
        if not subscriptions:
            return {}
        all_partitions = _subscribed_partitions(subscriptions, partitions_per_topic)
        # What each member keeps: partitions that still exist, that it still subscribes to and that
        # no other member claimed first (a corrupt or stale input must not produce two owners).
        kept: dict[str, list[TopicPartition]] = {m: [] for m in subscriptions}
        claimed: set[TopicPartition] = set()
        for member in sorted(subscriptions):
            for tp in sorted(current.get(member, ())):
                topic, index = tp
                if tp not in claimed and topic in subscriptions[member] and index < partitions_per_topic.get(topic, 0):
                    kept[member].append(tp)
                    claimed.add(tp)
        if len(set(subscriptions.values())) == 1:
            result = self._uniform(kept, all_partitions)
        else:
            result = self._general(subscriptions, kept, all_partitions)
        return {m: frozenset(tps) for m, tps in result.items()}

    @staticmethod
    def _uniform(kept: dict[str, list[TopicPartition]], all_partitions: list[TopicPartition]) -> dict[str, list]:
        members = list(kept)
        base, extra = divmod(len(all_partitions), len(members))
        # The `extra` members allowed one more are those that own the most now: fewest moves.
        by_owned = sorted(members, key=lambda m: (-len(kept[m]), m))
        quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_owned)}
        result: dict[str, list[TopicPartition]] = {}
        for member in members:
            result[member] = kept[member][: quota[member]]
        owned = {tp for tps in result.values() for tp in tps}
        free = [tp for tp in all_partitions if tp not in owned]
        for member in sorted(members, key=lambda m: (len(result[m]), m)):
            want = quota[member] - len(result[member])
            result[member].extend(free[:want])
            del free[:want]
        assert not free, f"partitions left unassigned by the uniform assignor: {free}"
        return result

    @staticmethod
    def _general(
        subscriptions: Mapping[str, frozenset[str]],
        kept: dict[str, list[TopicPartition]],
        all_partitions: list[TopicPartition],
    ) -> dict[str, list]:
        result = {m: list(tps) for m, tps in kept.items()}
        owner = {tp: m for m, tps in result.items() for tp in tps}
        for tp in all_partitions:
            if tp in owner:
                continue
            eligible = [m for m in subscriptions if tp[0] in subscriptions[m]]
            member = min(eligible, key=lambda m: (len(result[m]), m))
            result[member].append(tp)
            owner[tp] = member
        moves_left = _MAX_BALANCE_MOVES_PER_PARTITION * max(1, len(all_partitions))
        moved = True
        while moved:
            moved = False
            for tp in sorted(owner):
                source = owner[tp]
                eligible = [m for m in subscriptions if tp[0] in subscriptions[m] and m != source]
                if not eligible:
                    continue
                target = min(eligible, key=lambda m: (len(result[m]), m))
                if len(result[source]) - len(result[target]) >= 2:
                    result[source].remove(tp)
                    result[target].append(tp)
                    owner[tp] = target
                    moved = True
                    moves_left -= 1
                    assert moves_left > 0, "the uniform assignor's balancing did not converge"
        return result


class RangeAssignor:
    name = "range"

    def assign(
        self,
        subscriptions: Mapping[str, frozenset[str]],
        partitions_per_topic: Mapping[str, int],
        current: Mapping[str, frozenset[TopicPartition]],
    ) -> Assignment:
        result: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
        topics = sorted({t for ts in subscriptions.values() for t in ts if t in partitions_per_topic})
        for topic in topics:
            members = sorted(m for m, ts in subscriptions.items() if topic in ts)
            count = partitions_per_topic[topic]
            base, extra = divmod(count, len(members))
            start = 0
            for i, member in enumerate(members):
                size = base + (1 if i < extra else 0)
                result[member].update((topic, p) for p in range(start, start + size))
                start += size
            assert start == count, f"range assignor covered {start} of {count} partitions of {topic}"
        return {m: frozenset(tps) for m, tps in result.items()}


ASSIGNORS: dict[str, Assignor] = {a.name: a for a in (UniformAssignor(), RangeAssignor())}
DEFAULT_ASSIGNOR = "uniform"
