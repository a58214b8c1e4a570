from raftlog.replication.isr import (
    FollowerState,
    high_watermark,
    out_of_sync,
    ready_to_join,
)


def test_caught_up_time_follows_kafkas_rule():
    f = FollowerState()
    f.record_fetch(fetch_offset=0, leader_log_end=10, now_ms=100)
    assert f.last_caught_up_ms == -1  # behind, and no earlier fetch
    f.record_fetch(fetch_offset=10, leader_log_end=20, now_ms=200)
    assert f.last_caught_up_ms == 100  # reached the leader's end as of its previous fetch
    f.record_fetch(fetch_offset=20, leader_log_end=20, now_ms=300)
    assert f.last_caught_up_ms == 300
    f.record_fetch(fetch_offset=20, leader_log_end=50, now_ms=400)
    assert f.last_caught_up_ms == 300


def test_high_watermark_is_the_smallest_isr_end():
    followers = {2: FollowerState(log_end_offset=7), 3: FollowerState(log_end_offset=3)}
    assert high_watermark(1, 10, (1, 2, 3), followers) == 3
    assert high_watermark(1, 10, (1, 2), followers) == 7
    assert high_watermark(1, 10, (1,), followers) == 10


def test_slow_followers_leave_and_caught_up_ones_rejoin():
    followers = {2: FollowerState(last_caught_up_ms=0), 3: FollowerState(last_caught_up_ms=900)}
    assert out_of_sync(1, (1, 2, 3), followers, now_ms=1001, lag_max_ms=1000) == {2}
    followers[2].log_end_offset = 5
    followers[2].last_caught_up_ms = 1000
    now = {"now_ms": 1001, "lag_max_ms": 1000}
    assert not ready_to_join(2, (1, 3), followers, high_wm=6, leader_epoch_start_offset=0, **now)
    followers[2].log_end_offset = 6
    assert not ready_to_join(2, (1, 3), followers, high_wm=6, leader_epoch_start_offset=8, **now)
    followers[2].log_end_offset = 8
    assert ready_to_join(2, (1, 3), followers, high_wm=6, leader_epoch_start_offset=8, **now)
    # a stalled follower whose old log end equals the high watermark must not rejoin
    assert not ready_to_join(2, (1, 3), followers, high_wm=6, leader_epoch_start_offset=8, now_ms=5000, lag_max_ms=1000)
