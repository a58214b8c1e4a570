"""The chaos checker must catch each kind of damage it claims to count."""

from chaos.checker import Ack, check, divergent_offsets, make_value

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
