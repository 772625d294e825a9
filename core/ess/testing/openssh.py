"""A real OpenSSH ``sshd`` for tests and benchmarks: its own config, keys and log in a folder.

Needs ``/usr/sbin/sshd`` (Debian: ``apt-get install openssh-server``; ``mkdir -p /run/sshd``)
and, for hosts in network namespaces, root and ``ip netns``. Nothing system-wide is
started or changed: each server runs ``sshd -D`` with a config under ``folder``::

    server = OpenSshd(tmp_path / "s1", public_key_line)      # 127.0.0.1, a free port
    node = server.node("n1")                                 # an ess Node pointing at it
    ...
    server.stop()

``stop`` ends every process the server started, not only the listener: each connection is
served by a child that calls ``setsid()`` (so it leaves the listener's process group) and
outlives the listener, re-parented to init. Such a child is recognised by the server's log
file, which it keeps open (sshd rewrites its environment for the process title, so an
environment marker would not survive), and the commands it runs by their parent links.
:func:`leftover_processes` finds anything a server of this process left behind (Linux /proc).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

from ess.models import RUNNING, Node

from .sshd import free_port

SSHD = "/usr/sbin/sshd"
#: The log file of every server this process started: each sshd process holds its own open.
_LOGS: set[str] = set()


class OpenSshd:
    """One OpenSSH sshd accepting ``pubkey``; inside network namespace ``netns`` if given.

    With ``wait=False`` the constructor returns as soon as the process is started (start many,
    then :meth:`wait` for each: they boot in parallel).
    """

    def __init__(
        self,
        folder: Path,
        pubkey: str,
        *,
        address: str = "127.0.0.1",
        port: int | None = None,
        netns: str | None = None,
        wait: bool = True,
    ) -> None:
        folder.mkdir(parents=True)
        self.folder, self.address, self.netns = folder, address, netns
        self.port = port if port is not None else free_port()
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")],
            check=True,
            capture_output=True,
        )
        (folder / "authorized_keys").write_text(pubkey + "\n")
        config = folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress {address}\nHostKey {folder / 'host_key'}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nUseDNS no\nMaxStartups 200\nMaxSessions 50\n"
            # SFTP as most distributions ship it, for push.
            "Subsystem sftp internal-sftp\n"
        )
        # Its own process group (start_new_session), stopped as a whole; the log file is how
        # stop() recognises the per-connection children that leave that group.
        self.log = str((folder / "sshd.log").resolve())
        _LOGS.add(self.log)
        self.proc = subprocess.Popen(
            [*self._prefix(), SSHD, "-D", "-f", str(config), "-E", self.log], start_new_session=True
        )
        if wait:
            self.wait()

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def _listening(self) -> bool:
        if self.netns:  # not reachable from here until routes exist: ask the namespace itself
            out = subprocess.run(
                [*self._prefix(), "ss", "-ltnH", f"sport = :{self.port}"], capture_output=True, text=True, check=False
            ).stdout
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

    def processes(self) -> list[int]:
        """Every live process of this server: listener, per-connection children, their commands."""
        return _with_descendants(_holding({self.log}))

    def stop(self) -> None:
        """Stop the listener's process group, then every other process of this server."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        _kill_all(self.processes)


def leftover_processes() -> list[int]:
    """Live processes of every server this process started (none once each was stopped)."""
    return _with_descendants(_holding(_LOGS)) if _LOGS else []


def kill_leftovers() -> None:
    """Kill what :func:`leftover_processes` finds and wait until it is gone."""
    _kill_all(leftover_processes)


def _kill_all(find) -> None:
    # A process may fork between the scan and the kill: scan again until nothing is left.
    for _ in range(20):
        pids = find()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            _wait_gone(pid)
    raise RuntimeError(f"processes {find()} survived SIGKILL")


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` has exited (not our child, so no waitpid: a pidfd becomes readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def _holding(paths: set[str]) -> list[int]:
    """Pids with one of ``paths`` open."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"{entry.path}/fd")
        except OSError:  # gone meanwhile
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{entry.path}/fd/{fd}")
            except OSError:
                continue
            if target in paths:
                found.append(int(entry.name))
                break
    return found


def _with_descendants(roots: list[int]) -> list[int]:
    """``roots`` and every live (not zombie) process below them, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    alive: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            alive.add(int(entry.name))
            children.setdefault(int(ppid), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid for pid in roots if pid in alive]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return sorted(found)
