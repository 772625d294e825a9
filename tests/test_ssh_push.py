"""``push`` over SFTP (ess_push_files), and the cross-process lock on the known_hosts file."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes
from support.ssh_helpers import make_access, make_settings, quiet_progress

from ess.errors import UsageError
from ess.models import RUNNING, Node
from ess.plugins import get_plugin_manager
from ess.settings import load_settings
from ess.testing.sshd import SshNode, free_port, generate_ed25519_key, write_private_key
from ess_local.backend import LocalBackend
from ess_local.state import ClusterStore
from ess_ssh.hostkeys import KnownHosts
from ess_ssh.push import describe, plan_copy


@pytest.fixture(autouse=True)
def _no_leftover_nodes(ess_home: Path):
    yield
    kill_test_nodes(ess_home)


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "job"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "run.sh").chmod(0o750)
    (src / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (src / "sub" / "data.csv").chmod(0o640)
    return src


# -- planning and error wording (no network) -------------------------------------------------
def test_plan_keeps_the_folder_name_and_skips_links_to_folders_and_fifos(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    (src / "loop").symlink_to(src)
    (src / "alias.csv").symlink_to(src / "sub" / "data.csv")
    os.mkfifo(src / "pipe")
    plan = plan_copy(src)
    assert [(str(p), m) for p, m in plan.folders] == [
        ("job", stat.S_IMODE(src.stat().st_mode)),
        ("job/sub", stat.S_IMODE((src / "sub").stat().st_mode)),
    ]
    assert [(str(f.relative), f.mode, f.size) for f in plan.files] == [
        ("job/alias.csv", 0o640, 8),
        ("job/run.sh", 0o750, 19),
        ("job/sub/data.csv", 0o640, 8),
    ]
    assert sorted(plan.skipped) == [str(src / "loop"), str(src / "pipe")]
    single = plan_copy(src / "run.sh")
    assert single.folders == () and [str(f.relative) for f in single.files] == ["run.sh"]


def test_a_name_that_is_not_utf8_is_refused_before_anything_connects(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    with open(os.path.join(os.fsencode(src / "sub"), b"bad\xffname"), "w") as bad:
        bad.write("x")
    with pytest.raises(UsageError, match=r"the name 'job/sub/bad\\\\xffname' is not UTF-8 \(rename it\)"):
        plan_copy(src)


def test_plan_of_a_special_file_is_a_usage_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UsageError, match="not a regular file or folder"):
        plan_copy(tmp_path / "pipe")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(errno.EACCES, "Permission denied"), "permission denied: /root/x"),
        (OSError("Permission denied"), "permission denied: /root/x"),
        (OSError("No space left on device"), "no space left on the node: /root/x"),
        (OSError(errno.ENOENT, "No such file"), "no such file or folder: /root/x"),
        (OSError("Read-only file system"), "read-only file system: /root/x"),
        (OSError("Disk quota exceeded"), "disk quota exceeded on the node: /root/x"),
        (TimeoutError("timed out"), "timed out writing /root/x"),
        (EOFError(), "connection closed while writing /root/x"),
        (OSError("Failure"), "Failure: /root/x"),
    ],
)
def test_sftp_errors_read_as_one_short_reason(exc: BaseException, expected: str) -> None:
    assert describe(exc, "/root/x") == expected


# -- hook level ----------------------------------------------------------------------------
def test_push_hook_node_down_fails_alone_and_a_node_without_sftp_says_so(ess, tmp_path: Path) -> None:
    assert ess("instance", "local", "create", "--number", "2", "--no-verify").code == 0
    backend = LocalBackend()
    settings = load_settings(backend, None, cli={"ssh_timeout": 1.5}, env={})
    nodes = backend.nodes(settings)
    down = Node(id="down", state=RUNNING, address="127.0.0.1", port=free_port())
    src = _tree(tmp_path)
    results = get_plugin_manager().hook.ess_push_files(
        nodes=[*nodes, down],
        source=src,
        destination="drop",
        access=backend.access(settings),
        settings=settings,
        progress=quiet_progress()[0],
    )
    by_id = {r.node_id: r for r in results}
    assert [r.node_id for r in results] == [*[n.id for n in nodes], "down"]
    assert by_id["down"].exit_code is None and by_id["down"].error.startswith("connection refused")
    for node in nodes:
        result = by_id[node.id]
        home = ClusterStore("default").dir / "nodes" / node.id / "home"
        assert result.ok and result.exit_code == 0, result
        # A local node's SFTP is chrooted to its home (docs/local.md): there, home is "/".
        assert result.stdout == "copied 2 file(s), 27 bytes to /drop\n"
        assert (home / "drop" / "job" / "sub" / "data.csv").read_text() == "a,b\n1,2\n"

    key = generate_ed25519_key()
    key_file = write_private_key(key, tmp_path / "k")
    with SshNode(authorized_keys=[key]) as exec_only:  # answers exec requests, offers no SFTP
        (result,) = get_plugin_manager().hook.ess_push_files(
            nodes=[exec_only.node("n1")],
            source=src,
            destination=".",
            access=make_access(key_file),
            settings=make_settings(ssh_timeout=5.0),
            progress=quiet_progress()[0],
        )
    assert result.exit_code is None and "offers no SFTP" in result.error, result


# -- CLI level: local nodes ------------------------------------------------------------------
def test_push_file_and_folder_through_the_cli_and_read_them_back(ess, tmp_path: Path) -> None:
    assert ess("instance", "local", "create", "--number", "3").code == 0
    ids = sorted(ClusterStore("default").read().nodes)
    src = _tree(tmp_path)
    (src / "sub").chmod(0o555)  # a read-only folder must still be filled, then get its mode

    pushed = ess("instance", "local", "push", str(src), "--dest", "in/deep")
    assert pushed.code == 0, pushed
    assert all(f"{node_id}  ok" in pushed.out for node_id in ids), pushed.out
    one = ess("instance", "local", "push", str(src / "run.sh"), "--dest", "~/bin", "--json")
    assert one.code == 0, one
    payload = json.loads(one.out)
    assert (payload["source"], payload["destination"]) == (str(src / "run.sh"), "~/bin")
    assert sorted(r["node"] for r in payload["results"]) == ids
    assert all(r["ok"] and r["stdout"].startswith("copied 1 file(s), 19 bytes to /") for r in payload["results"])

    shown = ess(
        "instance",
        "local",
        "exec",
        "--",
        "cat in/deep/job/sub/data.csv; bin/run.sh; stat -c '%a %n' in/deep/job/run.sh "
        "in/deep/job/sub/data.csv in/deep/job/sub bin/run.sh",
    )
    assert shown.code == 0, shown
    for node_id in ids:
        got = [line.split(" | ", 1)[1] for line in shown.out.splitlines() if line.startswith(node_id)]
        assert got == [
            "a,b",
            "1,2",
            "run",
            "750 in/deep/job/run.sh",
            "640 in/deep/job/sub/data.csv",
            "555 in/deep/job/sub",
            "750 bin/run.sh",
        ]

    again = ess("instance", "local", "push", str(src), "--dest", "in/deep")  # overwrites, merges
    assert again.code == 0, again

    # An absolute destination on a local node is below its home: SFTP is chrooted there.
    absolute = tmp_path / "shared"
    landed = ess("instance", "local", "push", str(src / "run.sh"), "--dest", str(absolute / "a" / "b"))
    assert landed.code == 0, landed
    for node_id in ids:
        home = ClusterStore("default").dir / "nodes" / node_id / "home"
        assert (home / str(absolute / "a" / "b" / "run.sh").lstrip("/")).read_text() == "#!/bin/sh\necho run\n"
    assert not absolute.exists()


def test_what_push_leaves_out_is_named_on_stderr(ess, tmp_path: Path) -> None:
    """Links to folders and FIFOs are not copied (documented): the red team found it said
    nothing, so a folder arrived short without a word."""
    assert ess("instance", "local", "create", "--number", "1", "--no-verify").code == 0
    src = _tree(tmp_path)
    (src / "loop").symlink_to(src)
    os.mkfifo(src / "pipe")
    pushed = ess("instance", "local", "push", str(src), "--dest", "in")
    assert pushed.code == 0, pushed
    warning = [line for line in pushed.err.splitlines() if "not copied" in line]
    assert warning == [
        f"ess: warning: push: not copied (links to folders, sockets, FIFOs, devices): {src / 'loop'}, {src / 'pipe'}"
    ], pushed.err


def test_push_failures_through_the_cli(ess, tmp_path: Path) -> None:
    assert ess("instance", "local", "create", "--number", "2", "--no-verify").code == 0
    ids = sorted(ClusterStore("default").read().nodes)

    missing = ess("instance", "local", "push", str(tmp_path / "nope"), "--dest", "x")
    assert missing.code == 2, missing
    assert missing.err.strip().splitlines() == [
        f"ess: push {tmp_path / 'nope'}: no such file or folder (check the path)"
    ]
    assert not any((ClusterStore("default").dir / "nodes" / n / "home" / "x").exists() for n in ids)

    src = tmp_path / "f.txt"
    src.write_text("x")
    # sysfs refuses to create files, for root too: a portable "permission denied". A local
    # node's SFTP is chrooted to its home, so the way there is a link inside the home.
    homes = [ClusterStore("default").dir / "nodes" / n / "home" for n in ids]
    for home in homes:
        (home / "kernel").symlink_to("/sys/kernel")
        (home / "plain").write_text("not a folder")
    denied = ess("instance", "local", "push", str(src), "--dest", "/kernel")
    assert denied.code == 1, denied
    assert all(f"{node_id}  FAILED: permission denied: /kernel/f.txt" in denied.out for node_id in ids)

    clash = ess("instance", "local", "push", str(src), "--dest", "plain/sub")
    assert clash.code == 1, clash
    assert "not a folder: /plain" in clash.out


def test_a_full_disk_fails_the_node_and_nothing_unwritten_counts_as_copied(ess, tmp_path: Path) -> None:
    """Writes to /dev/full fail with ENOSPC, a real "disk full" from the kernel, through the
    node's real SFTP server. paramiko's close() drops the write answers: the old push said
    ``ok``, exit 0, for files left empty (found by the red team on a 1 MiB tmpfs)."""
    assert ess("instance", "local", "create", "--number", "1", "--no-verify").code == 0
    (node_id,) = ClusterStore("default").read().nodes
    home = ClusterStore("default").dir / "nodes" / node_id / "home"
    src = tmp_path / "three"
    src.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / name).write_bytes(os.urandom(70_000))
        (src / name).chmod(0o666)  # /dev/full's own mode: the old code chmod-ed through the link
    (home / "three").mkdir()
    (home / "three" / "b.bin").symlink_to("/dev/full")

    (home / "a.bin").symlink_to("/dev/full")
    single = ess("instance", "local", "push", str(src / "a.bin"), "--dest", "/")
    assert single.code == 1, single
    assert f"{node_id}  FAILED: no space left on the node: /a.bin" in single.out, single.out

    folder = ess("instance", "local", "push", str(src), "--dest", "/")
    assert folder.code == 1, folder
    assert f"{node_id}  FAILED: no space left on the node: /three/b.bin (after copying 1 of 3 files, 70000 bytes)" in (
        folder.out
    ), folder.out
    assert (home / "three" / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert not (home / "three" / "c.bin").exists()


def test_push_of_dot_and_dotdot_copies_the_folder_by_its_name_and_stays_in_dest(
    ess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``push ..`` wrote into DEST/.. and gave DEST's parent the source's mode (chmod 777 of
    a 700 folder, or of / with the default --dest . as root); ``push .`` named the copy "root"."""
    assert ess("instance", "local", "create", "--number", "1", "--no-verify").code == 0
    (node_id,) = ClusterStore("default").read().nodes
    home = ClusterStore("default").dir / "nodes" / node_id / "home"
    project = tmp_path / "proj"
    (project / "build").mkdir(parents=True)
    (project / "a.txt").write_text("a")
    project.chmod(0o777)
    (home / "in" / "deep").mkdir(parents=True)
    (home / "in").chmod(0o700)

    monkeypatch.chdir(project / "build")
    up = ess("instance", "local", "push", "..", "--dest", "in/deep")
    assert up.code == 0, up
    assert (home / "in" / "deep" / "proj" / "a.txt").read_text() == "a"
    assert stat.S_IMODE((home / "in").stat().st_mode) == 0o700
    assert not (home / "in" / "a.txt").exists()

    monkeypatch.chdir(project)
    here = ess("instance", "local", "push", ".", "--dest", "in/deep")
    assert here.code == 0, here
    assert sorted(p.name for p in (home / "in" / "deep").iterdir()) == ["proj"]


# -- known_hosts: two writers, each with its own KnownHosts ----------------------------------
SAVER = """
import sys
from pathlib import Path
from ess_ssh.hostkeys import KnownHosts
path, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(count):
    hosts = KnownHosts(path)
    hosts.learn(f"[10.0.{tag}.{i}]:22", "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAI" + tag + str(i))
    hosts.save()
"""


def test_two_processes_saving_at_once_keep_both_sets_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    count = 150
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(path), tag, str(count)]) for tag in ("1", "2")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * count and len(set(lines)) == 2 * count
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_two_threads_with_their_own_known_hosts_keep_both_sets(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    count = 150
    barrier = threading.Barrier(2)

    def save_many(tag: str) -> None:
        barrier.wait()
        for i in range(count):
            hosts = KnownHosts(path)  # its own thread lock: only the file lock keeps them apart
            hosts.learn(f"[10.1.{tag}.{i}]:22", "ssh-ed25519", f"AAAAC3Nza{tag}x{i}")
            hosts.save()

    threads = [threading.Thread(target=save_many, args=(tag,)) for tag in ("1", "2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(set(path.read_text().splitlines())) == 2 * count
