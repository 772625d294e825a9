"""Earlier waits' times (ess_ec2.wait_times): the statistics, and a file that is only ever advice."""

from __future__ import annotations

import json
import math
import os
import random
import threading

import pytest
from filelock import FileLock

from ess_ec2 import wait_times
from ess_ec2.wait_times import FILE_NAME, KEEP, WaitTimes, key_of, load, save

KEY = key_of("eu-west-1", ["t3.micro", "t3.micro"], "running")


def even(low: float = 15.0, high: float = 45.0, count: int = 100) -> WaitTimes:
    """``count`` nodes, one in each of ``count`` even brackets from ``low`` to ``high``."""
    step = (high - low) / count
    return WaitTimes(KEY, [(low + k * step, low + (k + 1) * step) for k in range(count)])


def at(*moments: float) -> list[tuple[float, float]]:
    """Brackets 10 ms wide: nodes seen by describes that came close together."""
    return [(m - 0.01, m) for m in moments]


def test_key_names_region_types_and_the_wait():
    assert KEY == "eu-west-1 t3.micro running"
    assert (
        key_of("us-east-1", ["m5.large", None, "c5.xlarge"], "terminated")
        == "us-east-1 ?,c5.xlarge,m5.large terminated"
    )


def test_share_and_moment_are_each_others_inverse():
    times = even()
    assert times.share(10.0) == 0.0 and times.share(50.0) == 1.0
    assert times.share(30.0) == pytest.approx(0.5) and times.share(18.0) == pytest.approx(0.1)
    for share in (0.0, 0.1, 0.37, 0.5, 0.99, 1.0):
        assert times.share(times.moment(share)) == pytest.approx(share)


def test_a_wide_bracket_counts_where_the_narrow_ones_say_nodes_get_there():
    """Ten nodes seen between describes at 22.0 and 22.2 s, ten between 10 and 30 s (a wait
    that jumped over them): all got there at about 22 s, not half of them by 20 s, as the
    brackets' middles would say (and a history of middles puts the next window late)."""
    times = WaitTimes(KEY, [(22.0, 22.2)] * 10 + [(10.0, 30.0)] * 10)
    assert times.share(21.99) < 0.01 and times.share(22.2) > 0.99
    assert 22.0 <= times.moment(0.5) <= 22.2 and times.moment(0.999) <= 22.2


def test_the_last_of_many_is_later_than_the_last_of_few():
    times = even()
    # One node: its own median; ten: the median of the latest of ten (0.5 ** 0.1 = 93 %).
    assert times.last_by(0.0, 1, 0.5) == pytest.approx(30.0)
    assert times.last_by(0.0, 10, 0.5) == pytest.approx(15 + 30 * 0.5**0.1)
    # Given 40 s passed, the 2 still out are in 40-45 s.
    assert 40.0 < times.last_by(40.0, 2, 0.5) < 45.0
    assert times.last_by(45.0, 1, 0.5) is None  # every earlier node was there by now: no fit


def test_counts_far_off_the_history_drop_it_either_way():
    assert even().check(30.0, 5, 10) and even().check(20.0, 0, 10)
    slow = even()
    assert not slow.check(44.0, 0, 10) and not slow.check(50.0, 10, 10)  # dropped stays dropped
    fast = even()
    assert not fast.check(18.0, 10, 10)
    # One node done before the earliest earlier one is not enough to drop it: n moments
    # cannot show chances finer than 1/(n+1).
    assert even().check(14.0, 1, 10)


def test_a_short_history_is_not_used_or_checked():
    times = WaitTimes(KEY, at(*[30.0] * (wait_times.ENOUGH - 1)))
    assert not times.usable() and times.check(1.0, 10, 10)


def test_saved_moments_are_loaded_sorted_per_key(tmp_path):
    first = WaitTimes(KEY)
    first.record(30.0, 30.5)
    first.record(12.0, 12.25)
    save(tmp_path, first)
    other = WaitTimes(key_of("eu-west-1", ["t3.large"], "running"), seen=[(98.0, 99.0)])
    save(tmp_path, other)
    assert sorted(load(tmp_path, KEY).past) == [(12.0, 12.25), (30.0, 30.5)]
    assert load(tmp_path, other.key).past == [(98.0, 99.0)]
    assert load(tmp_path, "eu-west-1 t3.micro terminated").past == []
    assert oct(os.stat(tmp_path / FILE_NAME).st_mode & 0o777) == "0o600"


def test_only_the_latest_keep_are_kept(tmp_path):
    for wait in range(30):
        save(tmp_path, WaitTimes(KEY, seen=at(*[float(wait + 1)] * 10)))
    kept = json.loads((tmp_path / FILE_NAME).read_text())[KEY]
    assert len(kept) == KEEP and kept[0][1] == 31 - KEEP // 10 and kept[-1][1] == 30.0


def test_a_history_that_no_longer_fits_is_replaced_by_this_wait(tmp_path):
    save(tmp_path, WaitTimes(KEY, seen=at(*[20.0] * 50)))
    times = load(tmp_path, KEY)
    assert not times.check(40.0, 0, 10)
    times.record(54.0, 55.0)
    save(tmp_path, times)
    assert load(tmp_path, KEY).past == [(54.0, 55.0)]


def test_a_wait_that_saw_nothing_writes_nothing(tmp_path):
    save(tmp_path, WaitTimes(KEY))
    assert not (tmp_path / FILE_NAME).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        json.dumps({KEY: "not a list"}).encode(),
        json.dumps(
            {KEY: [1, "2", None, -5, 1e308, {"x": 1}, [3], [5, 4], [-1, 2], [1, 1e9], [True, 3], [1, 2]]}
        ).encode(),
        json.dumps({KEY: {"a": 1}}).encode(),
        b"",
    ],
)
def test_a_damaged_file_is_ignored_and_then_replaced(tmp_path, content):
    path = tmp_path / FILE_NAME
    path.write_bytes(content)
    times = load(tmp_path, KEY)
    assert times.past in ([], [(1.0, 2.0)])  # only the one sane bracket, if any
    times.record(24.0, 25.0)
    save(tmp_path, times)
    assert (24.0, 25.0) in load(tmp_path, KEY).past
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_huge_files_and_huge_lists_are_bounded(tmp_path):
    draw = random.Random(3)
    (tmp_path / FILE_NAME).write_text(json.dumps({KEY: [[m, m + draw.uniform(0.1, 20)] for m in range(50_000)]}))
    times = load(tmp_path, KEY)
    times.record(19.0, 20.0)
    save(tmp_path, times)
    assert len(json.loads((tmp_path / FILE_NAME).read_text())[KEY]) == KEEP


def test_an_unwritable_folder_or_a_held_lock_never_fails_the_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(wait_times, "LOCK_WAIT", 0.2)
    times = WaitTimes(KEY, seen=[(19.0, 20.0)])
    (tmp_path / "folder-is-a-file").write_text("x")
    save(tmp_path / "folder-is-a-file", times)  # no folder: nothing raised
    assert load(tmp_path / "folder-is-a-file", KEY).past == []
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with FileLock(str(tmp_path / FILE_NAME) + ".lock"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(10)
        save(tmp_path, times)  # another ess saving: this one gives up after LOCK_WAIT
        assert not (tmp_path / FILE_NAME).exists()
    finally:
        release.set()
        holder.join()
    if os.geteuid() != 0:  # root writes anywhere
        tmp_path.chmod(0o500)
        try:
            save(tmp_path, times)
        finally:
            tmp_path.chmod(0o700)


def test_a_wait_of_many_keeps_a_spread_not_its_latest_nodes(tmp_path):
    """1,000 nodes seen one after another, 0.045 s apart: the kept 100 span the whole wait
    (the last 100 would all be over 40 s, a history slower than any node but the last)."""
    times = WaitTimes(KEY, seen=[(k * 0.045, k * 0.045 + 0.01) for k in range(1000)])
    save(tmp_path, times)
    kept = load(tmp_path, KEY)
    assert len(kept.past) == KEEP
    assert kept.moment(0.5) == pytest.approx(22.5, abs=1.0)
    assert kept.moment(0.05) < 3.0 and kept.moment(0.95) > 42.0


def test_trimming_an_older_wait_does_not_drop_its_earliest_nodes(tmp_path):
    """KEEP - 5 kept from one wait, then 10 more: the 5 trimmed of the first wait are not its
    5 earliest nodes (its brackets were stored in no particular order)."""
    save(tmp_path, WaitTimes(KEY, seen=[(float(k), k + 0.5) for k in range(KEEP - 5)]))
    save(tmp_path, WaitTimes(KEY, seen=at(*[500.0] * 10)))
    first_wait = {after for after, by in load(tmp_path, KEY).past if by < 500}
    trimmed = {float(k) for k in range(KEEP - 5)} - first_wait
    assert len(trimmed) == 5 and trimmed != {0.0, 1.0, 2.0, 3.0, 4.0}, trimmed


def test_the_binomial_tail_matches_the_exact_sum_and_holds_for_thousands_of_nodes():
    for n, p in [(1, 0.3), (10, 0.01), (10, 0.5), (30, 0.99), (200, 0.2)]:
        for k in range(n + 1):
            exact = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1))
            assert wait_times._at_most(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)
    # A float holds comb(n, j) only up to n ~ 1,030: the tail of a 5,000-node count must not overflow.
    assert wait_times._at_most(2_400, 5_000, 0.5) == pytest.approx(0.002441824868758747, rel=1e-9)  # scipy binom.cdf
    assert wait_times._at_most(5_000, 5_000, 0.5) == 1.0


def test_a_count_of_thousands_of_nodes_is_checked_without_error():
    """A 2,000-node wait with a history checked every count and raised OverflowError, which
    failed the wait (and rolled back a healthy launch)."""
    assert even().check(30.0, 1_000, 2_000)  # half there at the history's median: fits
    assert not even().check(30.0, 1_900, 2_000)


def test_the_file_keeps_the_most_recently_saved_keys_only(tmp_path):
    """Each key holds at most KEEP brackets, and the file at most KEYS keys: a master that
    tried many instance types does not grow it (or its read before every wait) without end."""
    keys = [key_of("eu-west-1", [f"t{k}.micro"], "running") for k in range(wait_times.KEYS + 6)]
    for key in keys:
        save(tmp_path, WaitTimes(key, seen=at(20.0)))
    save(tmp_path, WaitTimes(keys[0], seen=at(21.0)))  # saved again: the newest now
    kept = json.loads((tmp_path / FILE_NAME).read_text())
    assert len(kept) == wait_times.KEYS
    assert list(kept) == keys[7:] + keys[:1]
    assert load(tmp_path, keys[0]).past == at(21.0)  # it had been trimmed: it starts afresh
    assert load(tmp_path, keys[-1]).past == at(20.0)
