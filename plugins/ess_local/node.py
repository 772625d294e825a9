"""A local node: one SSH server process on 127.0.0.1 (asyncssh), run by the local backend.

    python -m ess_local.node --node-id local-1a2b3c4d --port 0 --host-key KEY \\
        --authorized-keys FILE --username USER --ready-file FILE --home DIR

The node binds the port it is given (0 = any free one), then writes ``{"port": N}`` to
the ready file (atomically), so the backend learns the real port without racing anyone
for it; if binding fails it writes ``{"error": "..."}`` instead and exits 1.

It accepts public-key logins only, for ``--username`` with the key in
``--authorized-keys``. ``exec`` requests run through ``/bin/sh -c`` in ``--home`` (also
``$HOME``), with real stdin, stdout, stderr and exit status; a session without a command
gets ``/bin/sh`` (interactive, on a pseudo-terminal, when the client asks for one, as
``ssh`` does by hand). Each command leads a session of its own: when the client goes away
before it ends, its whole process group gets SIGHUP and its pipes close; when its shell
exits, the exit status goes out at once, even if a background job still holds the output
open (that job keeps running, as under sshd). SFTP and scp are chrooted to ``--home``:
``/`` is the node's home folder, so no path a client sends (``../../..`` included) reaches
ess's own state next to it; their channels end with exit status 0, as OpenSSH's
sftp-server does, which OpenSSH's ``scp`` and ``sftp -b`` need to exit 0. SIGTERM (or
SIGINT) closes the server and exits 0, after a SIGTERM to the process group of every
command it started that still has a process (background workers included), as a machine
that shuts down would. If the node's folder disappears (cluster state deleted by hand),
the node exits by itself rather than live on as an orphan nobody can find.

Time limits (docs/lifetime.md): the node re-reads its own record (``node.json`` next to the
ready file) every :data:`TICK_SECONDS`, so ``extend`` moves its deadline by rewriting the
record. Past ``ess:expires`` it ends; with ``ess:idle-timeout`` it runs ess's node agent
(:func:`ess.lifetime.agent_script`, the same POSIX sh script EC2 nodes run) with the node's
own markers for busy: one file per open SSH connection and per running command in
``busy/``; the agent's "shutdown" is a SIGUSR1 to this process. A node that ends itself
writes ``ended.json`` (why, and whether it is terminated or stopped) before it exits, so
the backend tells it from a crash and settles its record on the next command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ess import lifetime
from ess.files import atomic_write

#: Seconds between checks that the node's folder still exists and its deadline is ahead.
TICK_SECONDS = 0.5
COPY_CHUNK = 65536
#: How long a session's output may still arrive once its shell exited, before the exit
#: status goes out: background jobs can hold the pipes (or the terminal) open for ever, and
#: sshd reports the exit as soon as the command exits.
OUTPUT_GRACE_SECONDS = 1.0
#: How long a cut-off command's shell gets to exit after SIGHUP before its session handler
#: stops waiting for it (the asyncio child watcher still reaps it whenever it does exit).
HANGUP_WAIT_SECONDS = 2.0
#: Why a node ended itself, in ``ended.json`` (read by the backend).
EXPIRED, IDLE = "expired", "idle"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ess_local.node", description=__doc__.splitlines()[0])
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host-key", required=True, type=Path)
    parser.add_argument("--authorized-keys", required=True, type=Path)
    parser.add_argument("--username", required=True)
    parser.add_argument("--ready-file", required=True, type=Path)
    parser.add_argument("--home", required=True, type=Path)
    return parser.parse_args(argv)


def _write_ready(path: Path, payload: dict[str, object]) -> None:
    # Atomic: the backend polls for this file and must never read half of it.
    atomic_write(path, json.dumps(payload))


class Busy:
    """Marker files the idle agent reads: one per open connection and per running command.

    Each holds a pid that is alive while the marker counts (the node's own for a
    connection, the command's for a command), so a marker left by a crash counts for nothing.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._numbers = itertools.count(1)

    def mark(self, kind: str, pid: int) -> Path | None:
        path = self.folder / f"{kind}-{next(self._numbers)}"
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            atomic_write(path, f"{pid}\n")
        except OSError:  # the node's folder is going away: nothing left to keep busy
            return None
        return path

    @staticmethod
    def clear(path: Path | None) -> None:
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()


class Sessions:
    """The process groups of the commands this node started, so that it can end them.

    Every command leads a session (and process group) of its own, so that cutting it off
    reaches the processes it started; that puts it outside the node's process group, which
    ``stop`` and ``terminate`` signal, so the node ends these groups itself when it ends. A
    group outlives its SSH session while a background job in it runs.
    """

    def __init__(self) -> None:
        self._groups: set[int] = set()

    def add(self, pgid: int) -> None:
        self._groups.add(pgid)

    def prune(self) -> None:
        """Forget the groups with no process left (called every tick): an empty group's number
        can be taken by an unrelated process leading a group of its own, never to be signalled."""
        for pgid in list(self._groups):
            try:
                os.killpg(pgid, 0)
            except OSError:  # gone, or (PermissionError) already another user's
                self._groups.discard(pgid)

    def end(self, signum: int) -> None:
        for pgid in self._groups:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signum)
        self._groups.clear()


def _sftp_factory(home: Path):
    """SFTP (and scp) sessions rooted at the node's home, ended with an exit status.

    The chroot is what keeps ``push x --dest ../../..`` from overwriting the cluster's
    state.json (the home folder lives inside ess's state folder). asyncssh closes an SFTP
    channel without an exit status by default; OpenSSH's ``scp`` (SFTP mode) then exits 1
    although the copy worked, so the session ends the way OpenSSH's sftp-server does.
    """
    import asyncssh

    root = os.fsencode(home)

    class NodeSFTPServer(asyncssh.SFTPServer):
        def __init__(self, chan) -> None:  # asyncssh.SSHServerChannel
            super().__init__(chan, chroot=root)

        def exit(self) -> None:
            with contextlib.suppress(Exception):  # the client may already be gone
                self.channel.exit(0)

    return NodeSFTPServer


async def _pump(reader: asyncio.StreamReader, writer: object) -> None:
    """Copy a subprocess's output to the SSH channel until EOF."""
    while True:
        chunk = await reader.read(COPY_CHUNK)
        if not chunk:
            return
        writer.write(chunk)  # type: ignore[attr-defined]
        await writer.drain()  # type: ignore[attr-defined]


async def _feed(reader: object, proc: asyncio.subprocess.Process) -> None:
    """Copy the SSH channel's stdin to the subprocess until the client sends EOF."""
    assert proc.stdin is not None
    try:
        while True:
            chunk = await reader.read(COPY_CHUNK)  # type: ignore[attr-defined]
            if not chunk:
                break
            proc.stdin.write(chunk)
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    except Exception:  # the channel closed under us: the command just sees EOF
        pass
    with contextlib.suppress(Exception):
        proc.stdin.close()


def _set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    import fcntl
    import struct
    import termios

    width, height, pixwidth, pixheight = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def _take_terminal() -> None:
    """In the child, after setsid: make the PTY on stdin the controlling terminal."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _run_in_pty(process, argv: list[str], env: dict[str, str], home: Path, sessions: Sessions) -> None:
    """Run a session on a real pseudo-terminal, as sshd does when the client asks for one."""
    import asyncssh

    master, slave = os.openpty()
    _set_winsize(slave, process.get_terminal_size())
    env = {**env, "TERM": process.get_terminal_type()}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=home,
            env=env,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
    except OSError as exc:
        os.close(master)
        os.close(slave)
        process.stderr.write(f"ess local node: cannot run /bin/sh: {exc.strerror}\r\n".encode())
        process.exit(127)
        return
    sessions.add(proc.pid)
    os.close(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    output_done = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(master, COPY_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal has closed it
            data = b""
        if data:
            process.stdout.write(data)
        else:
            loop.remove_reader(master)
            output_done.set()

    loop.add_reader(master, readable)

    async def feed() -> None:
        while True:
            try:
                data = await process.stdin.read(COPY_CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                _set_winsize(master, (change.width, change.height, change.pixwidth, change.pixheight))
                continue
            except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue
            if not data:
                return
            while data:
                try:
                    data = data[os.write(master, data) :]
                except BlockingIOError:
                    await asyncio.sleep(0.01)

    feeder = asyncio.ensure_future(feed())
    try:
        code = await proc.wait()
        # Background jobs may keep the terminal open: send what is there, then finish.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(output_done.wait(), OUTPUT_GRACE_SECONDS)
    finally:
        feeder.cancel()
        loop.remove_reader(master)
        os.close(master)
    with contextlib.suppress(Exception):
        process.exit(code if code >= 0 else 128 - code)


class _CommandProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's own protocol for a command's pipes, which also tells when the command exits.

    ``Process.wait()`` returns only once the pipes are closed too: a background job holding
    stdout open would hold back the exit status with it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)  # asyncio's default for its streams
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an outcome as seen: a pump failing once the client left is expected, not news."""
    if not future.cancelled():
        future.exception()


async def _run_command(
    process, argv: list[str], env: dict[str, str], home: Path, busy: Busy, sessions: Sessions
) -> None:
    """Run a session on pipes, as sshd does when the client asks for no terminal."""
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _CommandProtocol(loop),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=home,
            env=env,
            # Its own group: the client leaving must reach every process of the command (a
            # pipeline, a loop's children, a job in the background), not only the shell.
            start_new_session=True,
        )
    except OSError as exc:
        process.stderr.write(f"ess local node: cannot run /bin/sh: {exc.strerror}\n".encode())
        process.exit(127)
        return
    proc = asyncio.subprocess.Process(transport, protocol, loop)
    assert proc.stdout is not None and proc.stderr is not None
    sessions.add(proc.pid)
    marker = busy.mark("exec", proc.pid)
    hung_up = False

    def close_pipes() -> None:
        # The node's ends: a process still writing gets SIGPIPE (EPIPE) and one reading gets
        # EOF, as when sshd closes a session. Never transport.close(): it SIGKILLs a live shell.
        for fd in (0, 1, 2):
            pipe = transport.get_pipe_transport(fd)
            if pipe is not None:
                pipe.close()

    def hang_up() -> None:
        nonlocal hung_up
        hung_up = True
        with contextlib.suppress(OSError):  # the group has just ended by itself
            os.killpg(proc.pid, signal.SIGHUP)
        close_pipes()

    feeder = asyncio.ensure_future(_feed(process.stdin, proc))
    output = asyncio.ensure_future(
        asyncio.gather(_pump(proc.stdout, process.stdout), _pump(proc.stderr, process.stderr))
    )
    output.add_done_callback(_retrieve)
    gone = asyncio.ensure_future(process.channel.wait_closed())
    try:
        pending: set[asyncio.Future[Any]] = {protocol.exited, gone, output}
        while not protocol.exited.done():
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if protocol.exited.done():
                break
            if gone.done() or (output.done() and output.exception() is not None):
                # The client went away (deadline, Ctrl-C, `| head`) or the channel broke. A
                # process that ignores SIGHUP and never writes survives this, as under
                # OpenSSH; the wait for the shell is bounded so that it cannot hold this
                # handler (and the busy marker) for ever.
                hang_up()
                await asyncio.wait({protocol.exited}, timeout=HANGUP_WAIT_SECONDS)
                return
            pending.discard(output)  # both streams closed while the shell runs on (`exec >&-`)
        code = proc.returncode
        assert code is not None
        if not output.done():
            await asyncio.wait({output, gone}, timeout=OUTPUT_GRACE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        # A background job still holding the output (`worker &`) keeps running: it only loses
        # its reader, as under sshd. What was read before that still goes to the client.
        close_pipes()
        if not output.done():
            await asyncio.wait({output, gone}, timeout=OUTPUT_GRACE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        with contextlib.suppress(Exception):  # the client may be gone already
            process.exit(code if code >= 0 else 128 - code)
    finally:
        # Also when the node ends and cancels this handler mid-command.
        if proc.returncode is None and not hung_up:
            hang_up()
        close_pipes()
        for task in (feeder, output, gone):
            task.cancel()
        busy.clear(marker)


def _make_handler(home: Path, username: str, busy: Busy, sessions: Sessions):
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")}
    env.update(HOME=str(home), USER=username, LOGNAME=username, SHELL="/bin/sh")

    async def handle(process) -> None:  # asyncssh.SSHServerProcess
        command = process.command
        argv = ["/bin/sh", "-c", command] if command is not None else ["/bin/sh"]
        session_env = dict(env)
        # Only plain names: the client's environment must not reach LD_PRELOAD and friends.
        for key, value in (process.env or {}).items():
            if isinstance(key, str) and key.startswith("LC_") and isinstance(value, str):
                session_env[key] = value
        if process.get_terminal_type():
            if command is None:
                argv = ["/bin/sh", "-i"]
            await _run_in_pty(process, argv, session_env, home, sessions)
        else:
            await _run_command(process, argv, session_env, home, busy, sessions)

    return handle


async def _serve(args: argparse.Namespace) -> int:
    import asyncssh

    allowed = asyncssh.read_authorized_keys(str(args.authorized_keys))
    username = args.username

    busy = Busy(args.ready_file.parent / "busy")
    sessions = Sessions()

    class NodeServer(asyncssh.SSHServer):
        marker: Path | None = None

        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            self.marker = busy.mark("session", os.getpid())

        def connection_lost(self, exc: Exception | None) -> None:
            busy.clear(self.marker)

        def begin_auth(self, user: str) -> bool:
            return True  # always ask for a key, even for unknown users (no user probing)

        def password_auth_supported(self) -> bool:
            return False

        def public_key_auth_supported(self) -> bool:
            return True

        def validate_public_key(self, user: str, key: asyncssh.SSHKey) -> bool:
            return user == username and allowed.validate(key, "127.0.0.1", "127.0.0.1") is not None

    node_dir = args.ready_file.parent
    _fresh_start(node_dir)
    deadline = _limits(node_dir).deadline
    if deadline is not None and datetime.now(timezone.utc) >= deadline:
        # `start` after the deadline: refuse in the ready file, so start says why.
        _write_ready(
            args.ready_file,
            {"error": f"its deadline {lifetime.stamp(deadline)} has passed (extend it first with extend --ttl)"},
        )
        return 1
    args.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    args.home.chmod(0o700)  # a home made 0755 by an older ess becomes private too
    os.chdir(args.home)  # commands start here; SFTP is chrooted here too
    try:
        server = await asyncssh.listen(
            "127.0.0.1",
            args.port,
            server_factory=NodeServer,
            server_host_keys=[str(args.host_key)],
            process_factory=_make_handler(args.home, username, busy, sessions),
            sftp_factory=_sftp_factory(args.home),
            allow_scp=True,
            encoding=None,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=True,
            line_editor=False,
            reuse_address=True,
        )
    except (OSError, asyncssh.Error) as exc:
        _write_ready(args.ready_file, {"error": f"cannot listen on 127.0.0.1:{args.port}: {exc}"})
        return 1
    port = server.sockets[0].getsockname()[1]
    _write_ready(args.ready_file, {"port": port, "pid": os.getpid()})
    print(f"ess local node {args.node_id} listening on 127.0.0.1:{port}", flush=True)

    stop = asyncio.Event()
    idle_acted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, idle_acted.set)  # the idle agent's "shutdown"
    next_idle_check = 0.0
    watched_idle: int | None = None
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_SECONDS)
        sessions.prune()
        if not node_dir.is_dir():
            print(f"ess local node {args.node_id}: {node_dir} is gone, exiting", flush=True)
            break
        limits = _limits(node_dir)
        if idle_acted.is_set():
            _end(args.node_id, node_dir, IDLE, limits.idle_action, f"idle for {limits.idle}s")
            break
        deadline = limits.deadline
        if deadline is not None and datetime.now(timezone.utc) >= deadline:
            _end(args.node_id, node_dir, EXPIRED, lifetime.TERMINATE, f"deadline {lifetime.stamp(deadline)} passed")
            break
        if limits.idle != watched_idle:  # a new window (retag): look now, then at its own pace
            watched_idle, next_idle_check = limits.idle, 0.0
        if limits.idle is not None and loop.time() >= next_idle_check:
            next_idle_check = loop.time() + _idle_interval(limits.idle)
            await _run_idle_agent(node_dir, limits.idle)
    # As a shutdown would, the node takes its commands with it, background workers too (they
    # left its process group, which is what stop and terminate signal).
    sessions.end(signal.SIGTERM)
    server.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), 2.0)
    print(f"ess local node {args.node_id} stopped", flush=True)
    return 0


class NodeLimits:
    """What the node's record says of its limits now (re-read every tick: ``extend`` moves them)."""

    def __init__(self, tags: dict[str, object]) -> None:
        self.deadline = lifetime.parse_stamp(str(tags.get(lifetime.TAG_EXPIRES) or ""))
        idle = str(tags.get(lifetime.TAG_IDLE_TIMEOUT) or "")
        self.idle: int | None = int(idle) if idle.isdigit() and int(idle) > 0 else None
        action = tags.get(lifetime.TAG_IDLE_ACTION)
        self.idle_action = action if action in lifetime.IDLE_ACTIONS else lifetime.TERMINATE


def _limits(node_dir: Path) -> NodeLimits:
    """The limits in the node's record; none if it cannot be read (being rewritten is atomic,
    so this is a record lost or damaged: the node keeps running rather than guess)."""
    try:
        tags = json.loads((node_dir / "node.json").read_text()).get("tags")
    except (OSError, ValueError, AttributeError):
        tags = None
    return NodeLimits(tags if isinstance(tags, dict) else {})


def _idle_interval(idle: int) -> float:
    """How often the agent looks: a tenth of the window, between 1 and 30 seconds."""
    return min(max(idle / 10, 1.0), 30.0)


async def _run_idle_agent(node_dir: Path, idle: int) -> None:
    """One look by the node agent; busy comes from this node's markers only (the machine's
    load and sshd sessions belong to everything else running on it)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ESS_AGENT_CONF": "/dev/null",
        "ESS_IDLE_TIMEOUT": str(idle),
        "ESS_IDLE_STATE": str(node_dir / "last-busy"),
        "ESS_BUSY_DIR": str(node_dir / "busy"),
        "ESS_AGENT_LOG": str(node_dir / "agent.log"),
        "ESS_AGENT_SYSLOG": "0",
        "ESS_LOAD_CMD": "echo 0",
        "ESS_SESSIONS_CMD": "echo 0",
        "ESS_SHUTDOWN_CMD": f"kill -USR1 {os.getpid()}",
    }
    with contextlib.suppress(OSError):
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            str(lifetime.agent_script()),
            "idle",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()


def _end(node_id: str, node_dir: Path, reason: str, action: str, why: str) -> None:
    """Record why the node ends itself, then let the caller close the server."""
    with contextlib.suppress(OSError):
        atomic_write(
            node_dir / "ended.json",
            json.dumps({"reason": reason, "action": action, "why": why, "at": lifetime.stamp(lifetime.now_utc())}),
        )
    print(f"ess local node {node_id}: {why}; ending ({action})", flush=True)


def _fresh_start(node_dir: Path) -> None:
    """A node started (again) owes nothing to its last run: no end record, a whole idle window."""
    for name in ("ended.json", "last-busy"):
        with contextlib.suppress(OSError):
            (node_dir / name).unlink()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
