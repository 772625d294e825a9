"""ess.testing.openssh stops everything a server started, not only its listener.

sshd serves each connection from a child that calls setsid() and outlives the listener;
the tier once left such an orphan (`sshd: root@notty`, parent 1) behind.
"""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

from ess.testing.openssh import OpenSshd, leftover_processes


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_ends_open_connections_and_the_commands_they_run(tmp_path: Path, tools: None) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server = OpenSshd(tmp_path / "server", (tmp_path / "id_ed25519.pub").read_text().strip())
    client = subprocess.Popen(
        [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(server.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            f"{getpass.getuser()}@127.0.0.1",
            "echo $$; exec sleep 300",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        command = int(client.stdout.readline())  # the session is up and its command runs
        assert command in server.processes()
        assert len(server.processes()) >= 3  # listener, connection child, command

        server.stop()

        assert not alive(command)
        assert server.processes() == [] and leftover_processes() == []
        assert client.wait(timeout=30) != 0  # the connection was closed under it
    finally:
        client.kill()
        client.wait()
        server.stop()
