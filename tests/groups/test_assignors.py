"""Assignors: balanced, complete, sticky (property tests)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog.groups.assignors import RangeAssignor, UniformAssignor

uniform = UniformAssignor()

topics_st = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 20), min_size=1, max_size=4)


def _owners(assignment):
    owners = {}
    for member, tps in assignment.items():
        for tp in tps:
            assert tp not in owners, f"{tp} given to {owners[tp]} and {member}"
            owners[tp] = member
    return owners


def _all(counts, topics):
    return {(t, p) for t in topics for p in range(counts[t])}


@settings(max_examples=300, deadline=None)
@given(counts=topics_st, members=st.integers(1, 12))
def test_uniform_is_balanced_and_complete(counts, members):
    topics = frozenset(counts)
    subscriptions = {f"m{i}": topics for i in range(members)}
    result = uniform.assign(subscriptions, counts, {})
    owners = _owners(result)
    assert set(owners) == _all(counts, topics)
    sizes = [len(tps) for tps in result.values()]
    assert max(sizes) - min(sizes) <= 1


@st.composite
def join_or_leave(draw):
    counts = draw(topics_st)
    members = draw(st.integers(1, 10))
    names = [f"m{i}" for i in range(members)]
    return counts, names, draw(st.booleans()), draw(st.sampled_from(names))


@settings(max_examples=300, deadline=None)
@given(case=join_or_leave())
def test_uniform_moves_only_what_must_move(case):
    counts, names, join, leaver = case
    topics = frozenset(counts)
    before = uniform.assign({m: topics for m in names}, counts, {})
    if join:
        after_members = names + ["new"]
    else:
        after_members = [m for m in names if m != leaver]
        if not after_members:
            return
    after = uniform.assign({m: topics for m in after_members}, counts, before)
    _owners(after)
    sizes = [len(tps) for tps in after.values()]
    assert max(sizes) - min(sizes) <= 1
    if join:
        # Everything that moved went to the newcomer; nobody else gained anything.
        for m in names:
            assert after[m] <= before[m], f"{m} gained {sorted(after[m] - before[m])} on a join"
        moved = sum(len(before[m] - after[m]) for m in names)
        assert moved == len(after["new"])
    else:
        # Only the leaver's partitions moved; nobody lost anything.
        for m in after_members:
            assert before[m] <= after[m], f"{m} lost {sorted(before[m] - after[m])} on a leave"
        assert sum(len(after[m] - before[m]) for m in after_members) == len(before[leaver])


@settings(max_examples=200, deadline=None)
@given(
    counts=topics_st, subs=st.lists(st.sets(st.sampled_from(["a", "b", "c", "d"]), min_size=1), min_size=1, max_size=8)
)
def test_uniform_with_differing_subscriptions_covers_each_partition_once(counts, subs):
    subscriptions = {f"m{i}": frozenset(s) for i, s in enumerate(subs)}
    result = uniform.assign(subscriptions, counts, {})
    owners = _owners(result)
    wanted = {(t, p) for s in subscriptions.values() for t in s if t in counts for p in range(counts[t])}
    assert set(owners) == wanted
    for member, tps in result.items():
        assert all(t in subscriptions[member] for t, _ in tps)


@settings(max_examples=200, deadline=None)
@given(counts=topics_st, members=st.integers(1, 12))
def test_range_is_balanced_per_topic(counts, members):
    topics = frozenset(counts)
    result = RangeAssignor().assign({f"m{i}": topics for i in range(members)}, counts, {})
    owners = _owners(result)
    assert set(owners) == _all(counts, topics)
    for topic in topics:
        sizes = [sum(1 for t, _ in tps if t == topic) for tps in result.values()]
        assert max(sizes) - min(sizes) <= 1


def test_range_gives_consecutive_partitions():
    result = RangeAssignor().assign({"a": frozenset({"t"}), "b": frozenset({"t"})}, {"t": 5}, {})
    assert result == {"a": frozenset({("t", 0), ("t", 1), ("t", 2)}), "b": frozenset({("t", 3), ("t", 4)})}
