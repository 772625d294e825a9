"""Node processes: spawn them detached, recognise them for sure, stop them.

A pid in the state file is only a hint: the process may have died and the pid been
reused by something else. Before ess signals a pid it checks that the process is alive,
not a zombie, started at the recorded time (field 22 of ``/proc/<pid>/stat``) and runs
``ess_local.node`` for the recorded node id (``/proc/<pid>/cmdline``). Where ``/proc``
does not exist (macOS) the command line is read with ``ps`` and the start time with
``ps -o lstart``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NODE_MODULE = "ess_local.node"

log = logging.getLogger(__name__)

#: Seconds a node gets to exit after SIGTERM before it is sent SIGKILL.
GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Identity:
    """What proves a pid is the node process ess started: pid, start time, node id."""

    pid: int
    start_time: str
    node_id: str
    #: The ``--ready-file`` the node was started with; when set, it must match too, so a
    #: node of another cluster (or another ESS_HOME) with the same id is never taken for ours.
    ready_file: str = ""


def start_time(pid: int) -> str | None:
    """The process's start time as an opaque string, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None if Path("/proc/self").exists() else _ps(pid, "lstart=")
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie or dead process is not a running node
        return None
    return fields[19]


def command_line(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if Path("/proc/self").exists():
            return None
        text = _ps(pid, "command=")
        return text.split() if text else None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None


def _ps(pid: int, field: str) -> str | None:
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", field], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def is_ours(identity: Identity) -> bool:
    """True only if ``identity.pid`` is alive and is the node process recorded for this node."""
    if identity.pid <= 1:
        return False
    if start_time(identity.pid) != identity.start_time:
        return False
    argv = command_line(identity.pid)
    if not argv or NODE_MODULE not in argv:
        return False
    if _option(argv, "--node-id") != identity.node_id:
        return False
    return not identity.ready_file or _option(argv, "--ready-file") == identity.ready_file


def _option(argv: list[str], name: str) -> str | None:
    """The value after ``name`` in a node's command line (argparse's ``--name VALUE`` form)."""
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        return None


def find_nodes(nodes_dir: Path, valid_id: Callable[[str], bool]) -> dict[str, Identity]:
    """Every live node process of one cluster, found in the process table, not in a file.

    A node of the cluster is an ``ess_local.node`` process of this user whose ``--ready-file``
    is ``<nodes_dir>/<id>/ready.json`` for its own ``--node-id``: that is how ``list`` and
    ``terminate`` find a node whose record was lost (ess killed between spawn and save,
    state.json deleted or damaged). Linux only (``/proc``); elsewhere nothing is found.
    """
    found: dict[str, Identity] = {}
    proc = Path("/proc")
    if not (proc / "self").exists():
        return found
    uid = os.getuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        pid = int(entry.name)
        argv = command_line(pid)
        if not argv or NODE_MODULE not in argv:
            continue
        node_id = _option(argv, "--node-id")
        if node_id is None or not valid_id(node_id):
            continue
        ready_file = str(nodes_dir / node_id / "ready.json")
        given = _option(argv, "--ready-file") or ""
        if given != ready_file and os.path.realpath(given) != os.path.realpath(ready_file):
            continue
        started = start_time(pid)
        if started is None:
            continue
        found[node_id] = Identity(pid, started, node_id, ready_file)
    return found


def exists(identity: Identity) -> bool:
    """True while the process with this pid and start time exists (zombies excluded).

    Used to wait for a node that was verified and signalled: an exiting process loses its
    command line before it releases its sockets, so "not ours any more" would come too early.
    """
    return identity.pid > 1 and start_time(identity.pid) == identity.start_time


def spawn(argv: list[str], log_file: Path, cwd: Path) -> Identity | None:
    """Start a node process detached from this one; its identity, or None if it died at once.

    A new session keeps the node alive after ``ess`` exits and out of the terminal's
    Ctrl-C; stdin is /dev/null and output goes to the node's log file.
    """
    node_id = argv[argv.index("--node-id") + 1]
    ready_file = _option(argv, "--ready-file") or ""
    began = time.monotonic()
    # The log may hold what commands printed: private to this user from its first byte.
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as node_log:
        proc = subprocess.Popen(
            [sys.executable, "-m", NODE_MODULE, *argv],
            stdin=subprocess.DEVNULL,
            stdout=node_log,
            stderr=node_log,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    started = start_time(proc.pid)
    # Popen can return while the kernel is still inside execve (vfork), when the new
    # command line is not yet readable: wait for it, so the node verifies from now on.
    deadline = time.monotonic() + 5.0
    while started is not None and time.monotonic() < deadline:
        argv_now = command_line(proc.pid)
        if argv_now and NODE_MODULE in argv_now:
            break
        time.sleep(0.001)
        started = start_time(proc.pid)
    # The Popen object is dropped on purpose: the node must outlive this command. Python's
    # subprocess module keeps unfinished children in a list and reaps them later.
    if started is None:
        log.debug("spawn %s: pid %d exited at once (see %s)", node_id, proc.pid, log_file)
        return None
    log.debug("spawn %s: pid %d in %.1f ms, log %s", node_id, proc.pid, (time.monotonic() - began) * 1000, log_file)
    return Identity(proc.pid, started, node_id, ready_file)


def reap(pid: int) -> None:
    """Collect a node that was a child of this process, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def signal_node(identity: Identity, signum: int) -> bool:
    """Send ``signum`` to a verified node and the commands it runs; False if it is not ours."""
    if not is_ours(identity):
        # Never signalled: the pid died, or was reused by another process (the whole point).
        log.debug(
            "signal %s: pid %d is not that node's process any more; not signalled", identity.node_id, identity.pid
        )
        return False
    # The node leads its own session and process group (start_new_session), so the group
    # id is its pid: the group holds the node and the commands it is running, nothing else.
    # A process that is not a group leader gets the signal alone.
    try:
        if os.getpgid(identity.pid) == identity.pid:
            os.killpg(identity.pid, signum)
        else:
            os.kill(identity.pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.debug(
            "signal %s: pid %d refused %s (permission denied)",
            identity.node_id,
            identity.pid,
            signal.Signals(signum).name,
        )
        return False
    log.debug("signal %s: %s sent to pid %d", identity.node_id, signal.Signals(signum).name, identity.pid)
    return True


def stop(identities: list[Identity], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every verified node, SIGKILL those still alive after ``grace``; wait for all.

    A pid that does not verify as our node is never signalled.
    """
    pending = [ident for ident in identities if signal_node(ident, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    killed = False
    while pending:
        for ident in pending:
            reap(ident.pid)
        pending = [ident for ident in pending if exists(ident)]
        if not pending:
            break
        if time.monotonic() >= deadline:
            if killed:
                # SIGKILL cannot be refused; only an uninterruptible sleep delays it.
                if time.monotonic() >= deadline + grace:
                    break
            else:
                log.debug(
                    "stop: %d node(s) still alive %.0f s after SIGTERM: %s",
                    len(pending),
                    grace,
                    ", ".join(ident.node_id for ident in pending),
                )
                for ident in pending:
                    signal_node(ident, signal.SIGKILL)
                killed = True
        time.sleep(0.02)
