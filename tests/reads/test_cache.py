"""The read cache (pure logic, with a fake clock) and the invariants an answer must meet."""

import pytest

from app.reads.aggregates import Bucket, Refreshed, RollupState, Window
from app.reads.cache import Entry, ImpossibleAnswer, ReadCache, check_buckets, check_windows


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(maxsize: int = 8) -> tuple[ReadCache, FakeClock]:
    clock = FakeClock()
    cache = ReadCache(maxsize, ttl_recent_s=5, ttl_closed_s=600, sync_interval_s=1, timer=clock)
    cache.synced(RollupState(watermark_us=1_000, refreshed_at_us=None, log_id=10), [])
    return cache, clock


def entry(lo: int, hi: int, closed: bool) -> Entry:
    return Entry(b"{}", lo, hi, closed)


def test_recent_answers_expire_fast_and_closed_ones_live_long() -> None:
    cache, clock = make()
    assert cache.closed(900) and cache.closed(1_000) and not cache.closed(1_001)
    cache.put(("a", "t", 1), entry(0, 900, closed=True), cache.generation)
    cache.put(("a", "t", 2), entry(0, 2_000, closed=False), cache.generation)
    clock.now += 6
    assert cache.get(("a", "t", 1)) is not None
    assert cache.get(("a", "t", 2)) is None
    clock.now += 600
    assert cache.get(("a", "t", 1)) is None


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache, _ = make(maxsize=2)
    for key in range(3):
        if key == 2:
            assert cache.get(("a", 0)) is not None  # 0 is now more recent than 1
        cache.put(("a", key), entry(0, 1, closed=True), cache.generation)
    assert len(cache) == 2
    assert cache.get(("a", 1)) is None
    assert cache.get(("a", 0)) is not None and cache.get(("a", 2)) is not None


def test_a_late_refresh_evicts_only_the_answers_it_overlaps() -> None:
    cache, _ = make()
    cache.put(("a", "before"), entry(0, 100, closed=True), cache.generation)
    cache.put(("a", "overlap"), entry(100, 300, closed=True), cache.generation)
    cache.put(("a", "after"), entry(300, 400, closed=True), cache.generation)
    cache.synced(RollupState(1_000, None, 11), [Refreshed(11, 100, 300), Refreshed(9, 0, 400)])
    assert cache.get(("a", "overlap")) is None
    assert cache.get(("a", "before")) is not None and cache.get(("a", "after")) is not None
    # Already-seen log entries change nothing.
    cache.synced(RollupState(1_000, None, 11), [Refreshed(11, 0, 400)])
    assert cache.get(("a", "before")) is not None


def test_an_answer_computed_across_a_late_refresh_is_not_kept() -> None:
    cache, _ = make()
    generation = cache.generation  # the query starts...
    cache.synced(RollupState(1_000, None, 12), [Refreshed(12, 5_000, 6_000)])
    # ...and a late refresh was seen before it finished: it may predate that refresh.
    assert not cache.put(("a", 1), entry(0, 100, closed=True), generation)
    assert cache.get(("a", 1)) is None
    assert cache.put(("a", 1), entry(0, 100, closed=True), cache.generation)


def test_sync_is_due_once_per_interval() -> None:
    cache, clock = make()
    assert cache.sync_due()
    assert not cache.sync_due()
    clock.now += 1
    assert cache.sync_due()


def bucket(start: int, end: int, count: int = 1, avg: float = 1.0) -> Bucket:
    return Bucket(start, end, count, avg * count, avg, 0.0, 2.0)


def window(start: int, end: int, energy: float, cumulative: float, avg: float = 1.0) -> Window:
    return Window(start, end, avg, 2.0, energy, cumulative)


def test_invariants_refuse_impossible_buckets() -> None:
    check_buckets([bucket(0, 10), bucket(10, 20)], 0, 20)
    for bad in (
        [bucket(-1, 10)],  # starts before the range
        [bucket(10, 21)],  # ends after it
        [bucket(0, 10), bucket(5, 15)],  # overlaps
        [bucket(0, 10, avg=3.0)],  # avg above max
        [bucket(0, 10, count=-1)],
        [Bucket(0, 10, 1, float("nan"), 1.0, 0.0, 2.0)],
    ):
        with pytest.raises(ImpossibleAnswer):
            check_buckets(bad, 0, 20)


def test_invariants_refuse_impossible_energy() -> None:
    check_windows([window(0, 10, 1.0, 1.0), window(10, 20, 0.0, 1.0)], 0, 20)
    for bad in (
        [window(0, 10, -1.0, -1.0)],  # negative energy
        [window(0, 10, 2.0, 2.0), window(10, 20, 1.0, 1.0)],  # cumulative decreases
        [window(0, 10, 1.0, 5.0)],  # cumulative is not the running sum
        [window(0, 10, 1.0, 1.0, avg=3.0)],  # average above peak
        [window(0, 10, 1.0, 1.0, avg=-1.0)],
        [window(20, 30, 1.0, 1.0)],  # outside the range
    ):
        with pytest.raises(ImpossibleAnswer):
            check_windows(bad, 0, 20)
