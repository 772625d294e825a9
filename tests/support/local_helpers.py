"""Shared helpers for the local backend tests: settings, launches, SSH clients, cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ess.models import TAG_CLUSTER, TAG_LAUNCH, LaunchRequest, Node, Settings
from ess.progress import Progress
from ess.settings import load_settings
from ess_local.backend import LocalBackend


def settings_for(backend: LocalBackend, **cli: Any) -> Settings:
    return load_settings(backend, None, cli=cli, env={})


def request(count: int, cluster: str = "default", launch_id: str | None = None) -> LaunchRequest:
    launch_id = launch_id or uuid.uuid4().hex
    return LaunchRequest(
        count=count, min_count=count, launch_id=launch_id, tags={TAG_CLUSTER: cluster, TAG_LAUNCH: launch_id}
    )


def quiet() -> Progress:
    return Progress(quiet=True)


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def processes(match: Callable[[list[str]], bool]) -> list[int]:
    """Live processes (zombies left out) whose argument list ``match`` accepts, by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if match(argv) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def ssh_client(node: Node, username: str, key_file: Path):
    """A paramiko client that trusts exactly the node's recorded host key (RejectPolicy)."""
    import paramiko

    client = paramiko.SSHClient()
    keytype, blob = node.host_keys[0].split()[:2]
    client.get_host_keys().add(
        f"[127.0.0.1]:{node.port}",
        keytype,
        paramiko.PKey.from_type_string(keytype, __import__("base64").b64decode(blob)),
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        port=node.port,
        username=username,
        key_filename=str(key_file),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        banner_timeout=10,
        auth_timeout=10,
    )
    return client


def run(node: Node, username: str, key_file: Path, command: str) -> tuple[int, str, str]:
    client = ssh_client(node, username, key_file)
    try:
        _, stdout, stderr = client.exec_command(command, timeout=20)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err
    finally:
        client.close()


def kill_test_nodes(ess_home: Path) -> list[int]:
    """Kill every node process whose command line points into this test's ESS_HOME.

    Teardown must not depend on the state file being right (a test may have broken it
    on purpose), and must never touch another test's or the user's nodes.
    """
    killed = []
    marker = str(ess_home)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [part.decode(errors="replace") for part in argv]
        if "ess_local.node" in text and any(marker in part for part in text):
            pid = int(entry.name)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            killed.append(pid)
    for pid in killed:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    _kill_commands_of(ess_home)
    return killed


def _kill_commands_of(ess_home: Path) -> None:
    """Commands the nodes started lead process groups of their own (a node ends them when it
    ends, which a SIGKILL above does not let it do): find them by their folder, a node home."""
    marker = str(ess_home)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(marker + "/") and "/nodes/" in cwd:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def node_pids(ess_home: Path) -> list[int]:
    """Live ess_local.node processes whose command line points into this test's ESS_HOME.

    A node's own child between fork and exec (the shell of a command it runs) still shows
    the node's command line for a moment: it is left out by its parent, so it is never
    counted as one more node.
    """
    found: dict[int, int] = {}
    marker = str(ess_home)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if "ess_local.node" in argv and any(marker in part for part in argv) and pid_alive(int(entry.name)):
            found[int(entry.name)] = parent
    return sorted(pid for pid, parent in found.items() if parent not in found)


def listening_ports(pids: list[int]) -> set[int]:
    """TCP ports in LISTEN state whose socket one of ``pids`` holds (from /proc, no tools)."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
