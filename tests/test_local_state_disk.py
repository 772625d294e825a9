"""Issue 12: the local state folder full or read-only while a command runs.

The folder is a real tmpfs mounted for the test (root, as in CI): a full one gives ENOSPC,
a read-only bind mount over it gives EROFS, exactly what a full or broken disk gives. Each command
then says so in one line naming the file; `create` starts no node; `terminate all` still
stops every node process and never says "terminated" while the records stay.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, node_pids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root (CI runs as root)")


@pytest.fixture
def small_disk(ess_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ESS_HOME/state/local on its own 2 MB tmpfs."""
    monkeypatch.chdir(tmp_path)
    mount = ess_home / "state" / "local"
    mount.mkdir(parents=True, mode=0o700)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs as root: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        kill_test_nodes(ess_home)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> None:
    with contextlib.suppress(OSError), open(mount / "filler", "wb") as handle:
        while True:
            handle.write(b"\0" * 65536)


@contextlib.contextmanager
def read_only(mount: Path) -> Iterator[None]:
    """A read-only bind mount over ``mount``: new opens fail with EROFS; the nodes' open logs
    (on the mount below) stay writable, as on a disk that turned read-only under them."""
    subprocess.run(["mount", "--bind", str(mount), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("ess:")]
    assert len(lines) == 1, err
    return lines[0]


def test_create_on_a_full_disk_is_one_line_and_starts_nothing(ess, small_disk: Path, ess_home: Path) -> None:
    fill(small_disk)
    failed = ess("instance", "local", "create", "--number", "2", "--no-verify")
    assert failed.code == 1, failed
    line = one_line(failed.err)
    assert "No space left on device" in line and "free some disk space" in line, line
    assert "internal error" not in failed.err
    assert node_pids(ess_home) == []
    nodes = small_disk / "default" / "nodes"
    assert not nodes.exists() or not any(nodes.iterdir())


def test_terminate_all_on_a_read_only_disk_stops_every_node_and_says_the_records_stay(
    ess, small_disk: Path, ess_home: Path
) -> None:
    created = ess("instance", "local", "create", "--number", "2", "--no-verify")
    assert created.code == 0, created
    assert len(node_pids(ess_home)) == 2
    with read_only(small_disk):
        stuck = ess("instance", "local", "terminate", "all", "--yes")
        assert stuck.code == 1, stuck
        line = one_line(stuck.err)
        assert "stopped the processes of 2 node(s)" in line and "records stay" in line, line
        assert "terminated" not in stuck.err + stuck.out
        assert node_pids(ess_home) == []
        started = ess("instance", "local", "start")
        assert started.code == 1 and "cannot write" in one_line(started.err), started
        assert node_pids(ess_home) == []
    cleaned = ess("instance", "local", "terminate", "all", "--yes")
    assert cleaned.code == 0, cleaned
    assert not (small_disk / "default").exists()
