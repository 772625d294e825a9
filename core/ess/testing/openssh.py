"""A real OpenSSH ``sshd`` for tests and benchmarks: its own config, keys and log in a folder.

Needs ``/usr/sbin/sshd`` (Debian: ``apt-get install openssh-server``; ``mkdir -p /run/sshd``)
and, for hosts in network namespaces, root and ``ip netns``. Nothing system-wide is
started or changed: each server runs ``sshd -D`` with a config under ``folder``::

    server = OpenSshd(tmp_path / "s1", public_key_line)      # 127.0.0.1, a free port
    node = server.node("n1")                                 # an ess Node pointing at it
    ...
    server.stop()
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from ess.models import RUNNING, Node

from .sshd import free_port

SSHD = "/usr/sbin/sshd"


class OpenSshd:
    """One OpenSSH sshd accepting ``pubkey``; inside network namespace ``netns`` if given.

    With ``wait=False`` the constructor returns as soon as the process is started (start many,
    then :meth:`wait` for each: they boot in parallel).
    """

    def __init__(self, folder: Path, pubkey: str, *, address: str = "127.0.0.1", port: int | None = None,
                 netns: str | None = None, wait: bool = True) -> None:
        folder.mkdir(parents=True)
        self.folder, self.address, self.netns = folder, address, netns
        self.port = port if port is not None else free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")],
                       check=True, capture_output=True)
        (folder / "authorized_keys").write_text(pubkey + "\n")
        config = folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress {address}\nHostKey {folder / 'host_key'}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nUseDNS no\nMaxStartups 200\nMaxSessions 50\n")
        self.proc = subprocess.Popen([*self._prefix(), SSHD, "-D", "-f", str(config),
                                      "-E", str(folder / "sshd.log")])
        if wait:
            self.wait()

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def _listening(self) -> bool:
        if self.netns:  # not reachable from here until routes exist: ask the namespace itself
            out = subprocess.run([*self._prefix(), "ss", "-ltnH", f"sport = :{self.port}"],
                                 capture_output=True, text=True, check=False).stdout
            return bool(out.strip())
        try:
            with socket.create_connection((self.address, self.port), timeout=1) as sock:
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def wait(self, timeout: float = 10.0) -> None:
        """Until sshd accepts connections; RuntimeError with its log if it died or never did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._listening():
                return
            if self.proc.poll() is not None:
                raise RuntimeError((self.folder / "sshd.log").read_text())
            time.sleep(0.05)
        raise RuntimeError(f"sshd on {self.address}:{self.port} did not start within {timeout:g}s")

    @property
    def host_key_line(self) -> str:
        """The server's public host key, as an OpenSSH line ("ssh-ed25519 AAAA... comment")."""
        return (self.folder / "host_key.pub").read_text().strip()

    def node(self, node_id: str) -> Node:
        return Node(node_id, RUNNING, address=self.address, port=self.port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
