"""ess.files: the one atomic write every file ess shares goes through (modes, failures)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ess.errors import EssError
from ess.files import atomic_write, file_lock


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mode", "umask"), [(0o600, 0o000), (0o644, 0o077), (0o640, 0o022)])
def test_the_file_gets_the_mode_asked_for_whatever_the_umask(tmp_path: Path, mode: int, umask: int) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    target.chmod(0o666)
    previous = os.umask(umask)
    try:
        atomic_write(target, "new", mode=mode)
    finally:
        os.umask(previous)
    assert target.read_text() == "new" and mode_of(target) == mode


@pytest.mark.parametrize("fsync", [False, True])
def test_text_and_bytes_replace_the_whole_file_and_leave_no_temp_file(tmp_path: Path, fsync: bool) -> None:
    target = tmp_path / "f"
    target.write_text("a much longer old content\n" * 10)
    atomic_write(target, "héllo\n", fsync=fsync)
    assert target.read_text(encoding="utf-8") == "héllo\n"
    atomic_write(target, b"\x00\x01", fsync=fsync)
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_failed_replace_keeps_what_was_there_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a folder where the file should go: os.replace refuses
    (target / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError):
        atomic_write(target, "data")
    assert (target / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_missing_folder_is_an_oserror_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        atomic_write(tmp_path / "no" / "f", "data")
    assert str(tmp_path / "no") in str(raised.value)


def test_a_held_lock_times_out_with_the_callers_message(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with (
        file_lock(lock, timeout=1, busy="first"),
        pytest.raises(EssError, match="^someone else holds it$"),
        file_lock(lock, timeout=0, busy="someone else holds it"),
    ):
        pass  # filelock is reentrant per object, not per path: the second lock object waits
    with file_lock(lock, timeout=0, busy="free again"):
        assert lock.exists() and mode_of(lock) == 0o600
