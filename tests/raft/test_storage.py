from raftlog.raft.messages import Entry, HardState, Ready, Snapshot
from raftlog.raft.storage import RaftStorage
from raftlog.store import Store


def ready(**fields) -> Ready:
    base = dict(hard_state=None, truncate_from=None, entries=[], snapshot=None, messages=[], committed_entries=[],
                read_states=[])
    base.update(fields)
    return Ready(**base)


def test_persisted_state_survives_a_reopen(tmp_path):
    store = Store(tmp_path)
    storage = RaftStorage(store)
    storage.persist(ready(hard_state=HardState(3, 2, 2), entries=[Entry(1, 1, b"a"), Entry(3, 2, b"b"),
                                                                 Entry(3, 3, b"c")]))
    storage.persist(ready(truncate_from=3, entries=[Entry(4, 3, b"C")]))
    store.close()
    loaded = RaftStorage(Store(tmp_path)).load()
    assert loaded.hard_state == HardState(3, 2, 2)
    assert loaded.entries == [Entry(1, 1, b"a"), Entry(3, 2, b"b"), Entry(4, 3, b"C")]


def test_compaction_and_installed_snapshots(tmp_path):
    storage = RaftStorage(Store(tmp_path))
    storage.persist(ready(entries=[Entry(1, i, b"x%d" % i) for i in range(1, 6)]))
    storage.compact(Snapshot(3, 1, b"state"))
    loaded = storage.load()
    assert loaded.snapshot == Snapshot(3, 1, b"state") and [e.index for e in loaded.entries] == [4, 5]
    storage.persist(ready(snapshot=Snapshot(9, 2, b"leader-state")))
    loaded = storage.load()
    assert loaded.snapshot.index == 9 and loaded.entries == []
