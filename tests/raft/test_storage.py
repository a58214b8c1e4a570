import struct

from raftlog.node_ids import NO_NODE
from raftlog.raft.messages import Entry, HardState, Ready, Snapshot
from raftlog.raft.storage import HARD_STATE_KEY, RaftStorage
from raftlog.store import Store, WriteBatch


def ready(**fields) -> Ready:
    base = dict(
        hard_state=None,
        truncate_from=None,
        entries=[],
        snapshot=None,
        messages=[],
        committed_entries=[],
        read_states=[],
    )
    base.update(fields)
    return Ready(**base)


def test_persisted_state_survives_a_reopen(tmp_path):
    store = Store(tmp_path)
    storage = RaftStorage(store)
    storage.persist(
        ready(hard_state=HardState(3, 2, 2), entries=[Entry(1, 1, b"a"), Entry(3, 2, b"b"), Entry(3, 3, b"c")])
    )
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


def test_a_vote_for_node_0_and_no_vote_are_told_apart(tmp_path):
    storage = RaftStorage(Store(tmp_path))
    storage.persist(ready(hard_state=HardState(5, 0, 3), entries=[Entry(5, i, b"x") for i in range(1, 4)]))
    assert storage.load().hard_state == HardState(5, 0, 3)
    storage.persist(ready(hard_state=HardState(6, NO_NODE, 3)))
    assert storage.load().hard_state == HardState(6, NO_NODE, 3)


def test_hard_state_of_the_old_format_is_read_with_vote_0_as_no_vote(tmp_path):
    store = Store(tmp_path)
    family = store.family("raft")
    for term, vote in ((4, 0), (5, 2)):
        batch = WriteBatch()
        batch.put(family, HARD_STATE_KEY, struct.pack(">QQQ", term, vote, 0))
        store.write(batch, sync=True)
        assert RaftStorage(store).load().hard_state == HardState(term, NO_NODE if vote == 0 else vote, 0)


def test_a_snapshot_keeps_its_voter_set_and_an_older_one_has_none(tmp_path):
    from raftlog.raft.membership import decode_voters, encode_voters

    storage = RaftStorage(Store(tmp_path / "a"))
    storage.persist(ready(entries=[Entry(1, i, b"x%d" % i) for i in range(1, 4)]))
    storage.compact(Snapshot(2, 1, b"state", encode_voters({1: "n1:9092", 4: "n4:9092"})))
    assert decode_voters(storage.load().snapshot.config) == {1: "n1:9092", 4: "n4:9092"}
    storage.persist(ready(snapshot=Snapshot(3, 1, b"state")))  # one without: the configured voters
    assert storage.load().snapshot.config == b""
