"""ess_check_nodes against real OpenSSH: sshd on loopback, and hosts in network namespaces.

One namespace's link is dropped to prove the deadline: verify ends at ``ssh_timeout``
with a clear reason for that node while the others pass. 10.213.x.0/24 exists only
inside this machine's namespaces.
"""

from __future__ import annotations

import getpass
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.ssh_helpers import make_access, make_settings, quiet_progress

from ess.models import RUNNING, Node
from ess.testing.openssh import OpenSshd
from ess.testing.sshd import free_port
from ess_ssh.check import check_nodes
from ess_ssh.hostkeys import known_hosts_path
from ess_ssh.run import run_command

NETNS = ("ess-it-1", "ess-it-2", "ess-it-3")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def user_key(tmp_path: Path, tools: None) -> tuple[Path, str]:
    key = tmp_path / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    return key, (tmp_path / "id_ed25519.pub").read_text().strip()


def _remove_netns() -> None:
    for i, name in enumerate(NETNS, start=1):
        subprocess.run(["ip", "link", "del", f"essv{i}"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def netns_hosts(tmp_path: Path, user_key: tuple[Path, str]) -> Iterator[list[OpenSshd]]:
    """Three hosts 10.213.<i>.2, each an sshd in its own namespace behind a veth pair."""
    _remove_netns()  # leftovers of a killed run
    servers: list[OpenSshd] = []
    try:
        for i, name in enumerate(NETNS, start=1):
            host, peer = f"essv{i}", f"essv{i}p"
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", peer, "netns", name)
            sh("ip", "addr", "add", f"10.213.{i}.1/24", "dev", host)
            sh("ip", "link", "set", host, "up")
            sh("ip", "netns", "exec", name, "ip", "addr", "add", f"10.213.{i}.2/24", "dev", peer)
            sh("ip", "netns", "exec", name, "ip", "link", "set", peer, "up")
            sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
            servers.append(OpenSshd(tmp_path / name, user_key[1], address=f"10.213.{i}.2", port=22, netns=name))
        yield servers
    finally:
        for server in servers:
            server.stop()
        _remove_netns()


def test_loopback_sshd_fleet_verifies_and_learns_host_keys(tmp_path, user_key):
    key, pub = user_key
    servers = [OpenSshd(tmp_path / f"s{i}", pub, port=free_port()) for i in range(5)]
    try:
        nodes = [s.node(f"n{i}") for i, s in enumerate(servers)]
        progress, _ = quiet_progress()
        access = make_access(key, username=getpass.getuser())
        results = check_nodes(nodes, access, make_settings(ssh_timeout=30.0, verify_command="uname -s"), progress)
        assert [r.ok for r in results] == [True] * 5, [r.message for r in results]
        lines = known_hosts_path("test", "c1").read_text().splitlines()
        assert sorted(lines) == sorted(f"[127.0.0.1]:{s.port} {' '.join(s.host_key_line.split()[:2])}" for s in servers)
        outputs = run_command(
            nodes, "echo hello; echo oops >&2; exit 4", access, make_settings(strict_host_keys=True), progress
        )
        assert {(o.exit_code, o.stdout, o.stderr) for o in outputs} == {(4, b"hello\n", b"oops\n")}
    finally:
        for server in servers:
            server.stop()


def test_netns_hosts_with_one_dropped_end_at_the_deadline(netns_hosts, user_key):
    key, _ = user_key
    # Drop the third host: its side of the link goes down, packets to it vanish.
    sh("ip", "netns", "exec", NETNS[2], "ip", "link", "set", "essv3p", "down")
    nodes = [s.node(f"h{i}") for i, s in enumerate(netns_hosts, start=1)]
    progress, _ = quiet_progress()
    results = check_nodes(
        nodes,
        make_access(key, username=getpass.getuser()),
        make_settings(ssh_timeout=4.0, ssh_connect_timeout=2.0),
        progress,
    )
    assert [r.ok for r in results] == [True, True, False], [r.message for r in results]
    dropped = results[2]
    assert dropped.message.startswith(
        ("timed out (still failing after 4s", "no route to host (still failing after 4s")
    ), dropped.message
    assert dropped.attempts >= 1
    print("dropped:", dropped.message)


def test_netns_out_of_band_host_key_and_strict_mode(netns_hosts, user_key):
    key, _ = user_key
    trusted = netns_hosts[0]
    nodes = [
        Node("h1", RUNNING, address=trusted.address, host_keys=(trusted.host_key_line,)),
        netns_hosts[1].node("h2"),
    ]
    progress, _ = quiet_progress()
    results = check_nodes(
        nodes,
        make_access(key, username=getpass.getuser()),
        make_settings(ssh_timeout=10.0, strict_host_keys=True),
        progress,
    )
    assert results[0].ok, results[0].message
    assert not results[1].ok and "strict_host_keys is on" in results[1].message


@dataclass
class OneSshd:
    """One loopback sshd with the test's key, and what a call to it needs."""

    node: Node
    access: Any
    progress: Any


@pytest.fixture
def one_sshd(tmp_path: Path, user_key: tuple[Path, str]) -> Iterator[OneSshd]:
    key, pub = user_key
    server = OpenSshd(tmp_path / "s", pub, port=free_port())
    try:
        yield OneSshd(server.node("n0"), make_access(key, username=getpass.getuser()), quiet_progress()[0])
    finally:
        server.stop()


def test_push_to_a_full_disk_under_openssh_fails_and_stays_in_its_folder(tmp_path, one_sshd):
    """OpenSSH's sftp-server answers a write to a full disk with SSH_FX_FAILURE; ess must read
    that answer (paramiko's close() drops it) and must not treat ``..`` as a folder name."""
    from ess_ssh.push import push_files

    node, access, progress = one_sshd.node, one_sshd.access, one_sshd.progress
    src = tmp_path / "payload.bin"
    src.write_bytes(b"x" * 300_000)
    src.chmod(0o666)  # /dev/full's own mode, should a chmod go through the link
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "payload.bin").symlink_to("/dev/full")
    (result,) = push_files([node], src, str(dest), access, make_settings(ssh_timeout=30.0), progress)
    assert not result.ok and result.files == 0 and result.bytes == 0, result
    assert "disk full" in result.error and str(dest / "payload.bin") in result.error, result.error

    project = tmp_path / "proj"
    (project / "build").mkdir(parents=True)
    (project / "a.txt").write_text("a")
    (tmp_path / "in" / "deep").mkdir(parents=True)
    (tmp_path / "in").chmod(0o700)
    (result,) = push_files(
        [node], project / "build" / "..", str(tmp_path / "in" / "deep"), access, make_settings(), progress
    )
    assert result.ok, result
    assert (tmp_path / "in" / "deep" / "proj" / "a.txt").read_text() == "a"
    assert (tmp_path / "in").stat().st_mode & 0o777 == 0o700


def test_exec_under_openssh_ends_at_the_exit_closes_stdin_and_names_a_lost_status(tmp_path, one_sshd):
    """Red team, 2026-12-01: a command that started a background job (`worker &`) was reported
    "did not finish in time" at the deadline though sshd had sent its exit status; `cat`
    waited for stdin until the deadline; a command killed by a signal showed as exit -1."""
    node, access, progress = one_sshd.node, one_sshd.access, one_sshd.progress
    settings = make_settings(ssh_timeout=60.0)
    marker = tmp_path / "worker-alive"

    (started,) = run_command(
        [node], f"(sleep 5; touch {marker}) & echo started; exit 3", access, settings, progress, timeout=60.0
    )
    assert (started.exit_code, started.stdout, started.error) == (3, b"started\n", ""), started
    assert started.seconds < 30, started  # not the 60 s deadline
    assert not marker.exists()  # the background job was left to run, not waited for ...
    for _ in range(100):
        if marker.exists():
            break
        time.sleep(0.1)
    assert marker.exists()  # ... nor killed

    (reads,) = run_command([node], "cat; read line; echo done", access, settings, progress, timeout=60.0)
    assert (reads.exit_code, reads.stdout) == (0, b"done\n") and reads.seconds < 30, reads

    (killed,) = run_command([node], "echo before; kill -TERM $$", access, settings, progress, timeout=60.0)
    assert killed.exit_code is None and killed.stdout == b"", killed
    assert killed.error == "'echo before; kill -TERM $$' ended without an exit status (killed by a signal?)"
