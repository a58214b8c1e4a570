"""The node's GC policy: long-lived objects are frozen out of full collections once partitions
are in place, and the garbage of removed partitions is still reclaimed."""

import gc
import weakref

import pytest

from raftlog import gc_policy


class _Cyclic:
    """Stands for a partition's log: it refers to itself through a listener."""

    def __init__(self):
        self.listener = lambda: self


@pytest.fixture
def policy(monkeypatch):
    monkeypatch.setattr(gc_policy, "_enabled", True)
    yield gc_policy
    gc.unfreeze()


def test_a_process_that_did_not_enable_it_is_left_alone():
    gc.unfreeze()
    gc_policy.partitions_changed(opened=5, removed=0)  # not enabled (a test process): nothing frozen
    assert gc.get_freeze_count() == 0


def test_frozen_objects_are_left_out_of_collections_until_partitions_are_removed(policy):
    gc.unfreeze()
    log = _Cyclic()
    alive = weakref.ref(log)
    policy.partitions_changed(opened=1, removed=0)
    assert gc.get_freeze_count() > 0
    del log
    gc.collect()
    assert alive() is not None, "a frozen cycle is not walked by a collection"
    policy.partitions_changed(opened=0, removed=1)
    assert alive() is None, "removing partitions must reclaim their cyclic garbage"
    assert gc.get_freeze_count() > 0, "what is left is frozen again"


def test_a_round_that_changed_nothing_touches_nothing(policy):
    gc.unfreeze()
    policy.partitions_changed(opened=0, removed=0)
    assert gc.get_freeze_count() == 0
