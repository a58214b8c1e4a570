"""The chaos checker must catch each kind of damage it claims to count."""

from chaos.checker import Ack, check, check_group, divergent_offsets, make_value

V = make_value


def acks_for(partition_records):
    return [Ack(p, offset, value) for p, records in partition_records.items() for offset, value in records]


def test_a_faithful_log_passes():
    served = {0: [(0, V(0)), (1, V(2))], 1: [(0, V(1)), (1, V(3)), (2, V(5))]}
    verdict = check(acks_for({0: served[0], 1: served[1][:2]}), served)
    assert verdict.ok, verdict.summary()
    assert (verdict.acknowledged, verdict.served, verdict.unacknowledged) == (4, 5, 1)


def test_lost_duplicated_moved_and_reordered_records_are_counted():
    acks = [Ack(0, 0, V(0)), Ack(0, 1, V(1)), Ack(0, 2, V(2)), Ack(1, 0, V(3))]
    served = {0: [(0, V(0)), (1, V(2)), (2, V(1)), (3, V(2))], 1: []}
    verdict = check(acks, served)
    assert verdict.lost == [V(3)]
    assert verdict.duplicated == [V(2)]
    assert (V(1), (0, 1), (0, 2)) in verdict.moved and (V(2), (0, 2), (0, 1)) in verdict.moved
    assert verdict.reordered == [(0, 2)]
    assert not verdict.ok


def test_records_read_during_the_faults_must_still_be_served():
    served = {0: [(0, V(0)), (1, V(1))]}
    assert check([], served, read_live=[(0, 0, V(0)), (0, 1, V(1))]).ok
    verdict = check([], served, read_live=[(0, 1, V(7)), (0, 2, V(8))])
    assert verdict.vanished == [(0, 1, V(7)), (0, 2, V(8))] and not verdict.ok


def test_replicas_that_disagree_or_miss_records_are_divergent():
    same = {0: [(0, V(0)), (1, V(1))]}
    assert divergent_offsets({1: same, 2: same, 3: same}) == []
    assert divergent_offsets({1: same, 2: {0: [(0, V(0)), (1, V(9))]}}) == [(0, 1)]
    assert divergent_offsets({1: same, 2: {0: [(0, V(0))]}}) == [(0, 1)]


def group_verdict(acks, processed, commits):
    verdict = check(acks, {})
    verdict.lost = []  # only the group's checks are under test here
    check_group(verdict, acks, processed, commits)
    return verdict


def test_a_group_that_processed_everything_and_committed_in_order_passes():
    acks = [Ack(0, 0, V(0)), Ack(0, 1, V(2)), Ack(1, 0, V(1))]
    # partition 0 is read twice (a rebalance moved it before its commit): repeats are allowed
    processed = [(0, 0, V(0)), (1, 0, V(1)), (0, 0, V(0)), (0, 1, V(2))]
    verdict = group_verdict(acks, processed, {0: [1, 1, 2], 1: [1]})
    assert verdict.ok, verdict.summary()
    assert (verdict.group_processed, verdict.group_commits) == (4, 4)


def test_acknowledged_records_the_group_never_processed_are_reported():
    acks = [Ack(0, 0, V(0)), Ack(0, 1, V(2)), Ack(1, 0, V(1))]
    verdict = group_verdict(acks, [(0, 0, V(0))], {0: [1]})
    assert verdict.not_consumed_by_group == [V(2), V(1)] and not verdict.ok
    assert "not consumed by the group: 2" in verdict.summary()


def test_a_committed_offset_that_goes_back_is_reported():
    acks = [Ack(0, i, V(i)) for i in range(3)]
    processed = [(0, i, V(i)) for i in range(3)]
    verdict = group_verdict(acks, processed, {0: [2, 3, 1, 3]})
    assert verdict.group_commits_back == [(0, 3, 1)] and not verdict.ok
    assert "1 going back" in verdict.summary()


def test_a_committed_offset_beyond_what_was_processed_is_reported():
    acks = [Ack(0, i, V(i)) for i in range(3)] + [Ack(1, 0, V(9))]
    processed = [(0, i, V(i)) for i in range(3)] + [(1, 0, V(9))]
    verdict = group_verdict(acks, processed, {0: [3, 5], 1: [1], 2: [1]})
    assert verdict.group_commits_ahead == [(0, 5), (2, 1)] and not verdict.ok
    assert "2 beyond what was processed" in verdict.summary()
