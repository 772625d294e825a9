"""Many real SSH endpoints on one small machine: a few OpenSSH sshd, each on many addr:port pairs.

OpenSSH's sshd listens on at most MAX_LISTEN_SOCKS (16) sockets per process, so a farm of
N endpoints is ceil(N / 16) ``sshd -D`` listeners, each with 16 ``ListenAddress addr:port``
lines on its own loopback address (127.0.0.0/8 only: 127.77.G.1 for group G; Linux answers
on all of 127/8 without any setup). Every endpoint shares one host key and the user's one
authorized key, and known_hosts lists every ``[addr]:port`` (ess checks host keys strictly
in the benchmarks). No packet filter, no extra package: only /usr/sbin/sshd (root).

    farm = Farm(folder, public_key_line, 1000)
    farm.endpoints                       # [("127.77.0.1", 30001), ...]
    farm.write_known_hosts(path)
    farm.cost()                          # processes, RSS/PSS, fds of the listeners
    farm.stop()

``Farm(..., start=False)`` only writes the configs: :meth:`start_group` starts one listener
(the SSH-readiness benchmark starts them at staggered times) and :func:`listening` reads
the kernel's table of listening sockets, which says when a port accepts without touching it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
#: OpenSSH's compile-time cap on listen sockets per sshd (sshd.c, MAX_LISTEN_SOCKS).
PER_SSHD = 16
BASE_PORT = 30001


@dataclass(frozen=True)
class FarmCost:
    """What the listeners hold while idle (per-connection children come and go)."""

    processes: int
    rss_mb: float
    pss_mb: float
    fds: int


class Farm:
    """``count`` SSH endpoints served by ceil(count / per_sshd) sshd listeners."""

    def __init__(self, folder: Path, pubkey: str, count: int, *, per_sshd: int = PER_SSHD, start: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        self.folder = folder
        key = folder / "host_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (folder / "authorized_keys").write_text(pubkey + "\n")
        self.host_key_line = (folder / "host_key.pub").read_text().strip()
        groups = -(-count // per_sshd)
        self.groups: list[list[tuple[str, int]]] = []
        for g in range(groups):
            address = f"127.77.{g // 250}.{g % 250 + 1}"
            size = min(per_sshd, count - g * per_sshd)
            self.groups.append([(address, port) for port in free_ports(address, size)])
        self.endpoints = [endpoint for group in self.groups for endpoint in group]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        if start:
            for g in range(groups):
                self.start_group(g)
            self.wait()

    def _config(self, g: int) -> Path:
        config = self.folder / f"sshd_{g}.conf"
        listen = "".join(f"ListenAddress {a}:{p}\n" for a, p in self.groups[g])
        config.write_text(
            f"{listen}HostKey {self.folder / 'host_key'}\nPidFile none\n"
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nUseDNS no\nMaxStartups 1000\nMaxSessions 50\n"
            "Subsystem sftp internal-sftp\n"
        )
        return config

    def start_group(self, g: int) -> None:
        """Start listener ``g`` (its own process group, so :meth:`stop` ends its children too)."""
        log = self.folder / f"sshd_{g}.log"
        self.procs[g] = subprocess.Popen(
            [SSHD, "-D", "-f", str(self._config(g)), "-E", str(log)], start_new_session=True
        )

    def wait(self, timeout: float = 20.0) -> None:
        """Until every started listener's ports are in the kernel's listen table."""
        wanted = {e for g in self.procs for e in self.groups[g]}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted <= listening():
                return
            for g, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError((self.folder / f"sshd_{g}.log").read_text())
            time.sleep(0.05)
        raise RuntimeError(f"{len(wanted - listening())} endpoints not listening after {timeout:g}s")

    def write_known_hosts(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"[{a}]:{p} {self.host_key_line}\n" for a, p in self.endpoints))
        path.chmod(0o600)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs.values()]

    def cost(self) -> FarmCost:
        """Processes, summed RSS and PSS (shared pages split between sharers) and fds of the listeners."""
        rss = pss = 0
        fds = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
                fds += len(os.listdir(f"/proc/{pid}/fd"))
        return FarmCost(len(self.procs), rss / 1024, pss / 1024, fds)

    def stop(self) -> None:
        """End every listener's process group (per-connection children leave it: killed by log file)."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        logs = {str((self.folder / f"sshd_{g}.log").resolve()) for g in self.procs}
        from ess.testing.openssh import _holding, _kill_all, _with_descendants

        _kill_all(lambda: _with_descendants(_holding(logs)))
        self.procs.clear()


def free_ports(address: str, count: int, start: int = BASE_PORT) -> list[int]:
    """``count`` ports that ``address`` can bind now, from ``start`` up."""
    found: list[int] = []
    port = start
    while len(found) < count:
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
                found.append(port)
            except OSError:
                pass
        port += 1
    return found


def listening() -> set[tuple[str, int]]:
    """(address, port) of every IPv4 TCP socket in LISTEN state, from /proc/net/tcp."""
    found = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split(None, 4)
            if fields[3] != "0A":
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)[::-1]  # little-endian on x86
            found.add((socket.inet_ntoa(raw), int(hex_port, 16)))
    return found
