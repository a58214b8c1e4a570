import pytest

from raftlog.errors import RaftlogError
from raftlog.replication.producer_state import ProducerStateTable


def reason(call):
    with pytest.raises(RaftlogError) as info:
        call()
    return info.value.reason


def test_duplicates_are_recognised_with_their_original_offsets():
    table = ProducerStateTable()
    assert table.check(7, 0, 0, 4) is None
    table.record(7, 0, 0, 4, first_offset=100, last_offset=104)
    assert table.check(7, 0, 5, 9) is None
    table.record(7, 0, 5, 9, 105, 109)
    duplicate = table.check(7, 0, 0, 4)
    assert (duplicate.first_offset, duplicate.last_offset) == (100, 104)


def test_gaps_old_epochs_and_unknown_producers_are_refused():
    table = ProducerStateTable()
    table.record(7, 1, 0, 4, 0, 4)
    assert reason(lambda: table.check(7, 1, 6, 6)) == "OUT_OF_ORDER_SEQUENCE_NUMBER"
    assert reason(lambda: table.check(7, 0, 5, 5)) == "INVALID_PRODUCER_EPOCH"
    assert reason(lambda: table.check(8, 0, 3, 3)) == "UNKNOWN_PRODUCER_ID"
    assert table.check(7, 2, 0, 0) is None  # a bumped epoch restarts at 0
    assert reason(lambda: table.check(7, 2, 1, 1)) == "OUT_OF_ORDER_SEQUENCE_NUMBER"
    assert table.check(-1, -1, -1, -1) is None  # not idempotent: no checks


def test_persistence():
    table = ProducerStateTable()
    table.record(1, 0, 0, 0, 10, 10)
    table.record(1, 0, 1, 1, 11, 11)
    table.record(2, 0, 0, 0, 12, 12)
    restored = ProducerStateTable.from_json(table.to_json())
    assert restored.check(1, 0, 1, 1).first_offset == 11  # a retry of the batch at 11
    assert restored.check(2, 0, 1, 1) is None  # producer 2's next batch


def test_a_batch_ahead_of_its_sequence_is_recognised_as_waiting_for_earlier_ones():
    table = ProducerStateTable()
    assert table.is_ahead(5, 0, 3)  # unknown producer, not starting at 0: batch 0 may be on its way
    assert not table.is_ahead(5, 0, 0)
    table.record(5, 0, 0, 2, 10, 12)
    assert not table.is_ahead(5, 0, 3)
    assert table.is_ahead(5, 0, 4)
    assert not table.is_ahead(-1, -1, 7)
