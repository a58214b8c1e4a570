import pytest

from raftlog.storage_format import (
    StorageError,
    check_cluster_id,
    format_dirs,
    random_cluster_id,
    verify_dirs,
)


def test_format_then_verify(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    cluster_id = random_cluster_id()
    assert len(cluster_id) == 22
    assert format_dirs(dirs, cluster_id, 1) == dirs
    assert verify_dirs(dirs, 1) == cluster_id
    assert verify_dirs(dirs, 1, cluster_id) == cluster_id


def test_refuses_other_cluster_or_node(tmp_path):
    format_dirs([tmp_path], "clusterA", 1)
    with pytest.raises(StorageError, match="belongs to cluster 'clusterA', not 'clusterB'"):
        verify_dirs([tmp_path], 1, "clusterB")
    with pytest.raises(StorageError, match="belongs to node 1, not node 2"):
        verify_dirs([tmp_path], 2)


def test_unformatted_and_reformatting(tmp_path):
    with pytest.raises(StorageError, match="not formatted"):
        verify_dirs([tmp_path / "x"], 1)
    format_dirs([tmp_path], "c1", 1)
    with pytest.raises(StorageError, match="already formatted"):
        format_dirs([tmp_path], "c1", 1)
    assert format_dirs([tmp_path], "c1", 1, ignore_formatted=True) == []
    with pytest.raises(StorageError, match="belongs to cluster"):
        format_dirs([tmp_path], "c2", 1, ignore_formatted=True)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "semi;colon"])
def test_cluster_id_syntax(bad):
    with pytest.raises(StorageError):
        check_cluster_id(bad)
