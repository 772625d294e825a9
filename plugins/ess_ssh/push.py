"""``ess_push_files`` over SFTP: one file or folder to every node, in parallel, with a deadline.

The copy is planned once, locally, before anything connects (so an unreadable source file
is one usage error, not the same failure on every node). Then each node gets one SSH
connection (the :class:`~ess_ssh.connect.Connector` of ``verify`` and ``exec``: same key,
same host-key policy), one SFTP session on it, ``mkdir -p`` of the destination, and the
files written with pipelined requests, their mode bits copied from the source.

Only connecting is retried (nodes still booting). Once the first byte may have landed on a
node, a failure ends that node: ess never re-runs a half-done copy behind the user's back;
the error says how far it got, and running ``push`` again overwrites what is there.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ess import log as ess_log
from ess.errors import UsageError
from ess.models import Access, Node, Settings
from ess.progress import Progress

from .connect import Connector, SshFailure
from .fanout import Fleet

if TYPE_CHECKING:
    import paramiko

#: Bytes per SFTP write request (paramiko's own maximum request size).
CHUNK = 32768


@dataclass(frozen=True)
class LocalFile:
    """One file to copy: where it is here, where it goes below the destination, its size and mode."""

    path: Path
    relative: PurePosixPath
    size: int
    mode: int


@dataclass(frozen=True)
class Plan:
    """Everything one node needs written, worked out once from the local source."""

    source: Path
    folders: tuple[tuple[PurePosixPath, int], ...]  # (relative path, mode), parents first
    files: tuple[LocalFile, ...]
    skipped: tuple[str, ...]  # links to folders and special files, not copied

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class PushOutput:
    """The outcome of the copy on one node.

    ``connected`` tells a node that was never reached (nothing written) from one where the
    copy started; ``error`` is empty on success.
    """

    node_id: str
    destination: str = ""
    files: int = 0
    bytes: int = 0
    error: str = ""
    connected: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


def plan_copy(source: Path) -> Plan:
    """Walk ``source`` (a file, or a folder copied with its name kept) into a :class:`Plan`.

    Links to files are copied as the files they point to; links to folders are not followed
    (no loops, no surprise copies of half the disk) and are listed in ``skipped``, as are
    sockets, FIFOs and devices. An unreadable file or folder is a UsageError.
    """
    source = Path(source)
    if source.is_file():
        return Plan(source, (), (_local_file(source, PurePosixPath(source.name)),), ())
    if not source.is_dir():
        raise UsageError(f"push {source}: not a regular file or folder")
    # The folder's own name, also for "." and "..": Path("..").name is "..", and copying as
    # DEST/.. wrote next to DEST and gave DEST's parent the source's mode.
    top = PurePosixPath(Path(os.path.abspath(source)).name or "root")
    folders: list[tuple[PurePosixPath, int]] = [(top, _mode(source))]
    files: list[LocalFile] = []
    skipped: list[str] = []

    def unreadable(exc: OSError) -> None:
        raise UsageError(f"push {source}: cannot read {exc.filename} ({exc.strerror}; fix its permissions)")

    for root, dirnames, filenames in os.walk(source, onerror=unreadable):
        here = top / PurePosixPath(Path(root).relative_to(source).as_posix())
        for name in sorted(dirnames):
            path = Path(root, name)
            if path.is_symlink():
                skipped.append(str(path))
                continue
            folders.append((here / name, _mode(path)))
        dirnames[:] = sorted(d for d in dirnames if not Path(root, d).is_symlink())
        for name in sorted(filenames):
            path = Path(root, name)
            if path.is_file():
                files.append(_local_file(path, here / name))
            else:
                skipped.append(str(path))
    for relative in [path for path, _ in folders] + [item.relative for item in files]:
        _sendable(source, relative)
    return Plan(source, tuple(folders), tuple(files), tuple(skipped))


def _sendable(source: Path, relative: PurePosixPath) -> None:
    """SFTP names are UTF-8: a name that is not fails before anything connects, not after
    folders were made on every node."""
    try:
        str(relative).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(relative).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise UsageError(f"push {source}: the name {shown!r} is not UTF-8 (rename it)") from None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _local_file(path: Path, relative: PurePosixPath) -> LocalFile:
    try:
        info = path.stat()
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"push {path}: cannot read it ({exc.strerror}; fix its permissions)") from None
    return LocalFile(path, relative, info.st_size, stat.S_IMODE(info.st_mode))


def push_files(
    nodes: list[Node], source: Path, destination: str, access: Access, settings: Settings, progress: Progress
) -> list[PushOutput]:
    """Copy ``source`` into the folder ``destination`` on every node; one PushOutput per node, in order.

    ``ssh_parallel`` nodes at a time; ``ssh_timeout`` bounds connecting plus copying on each.
    """
    if not nodes:
        return []
    plan = plan_copy(source)  # UsageError before any connection
    if not destination.strip():
        raise UsageError("push --dest: empty folder name (give a folder, e.g. --dest .)")
    if plan.skipped:
        # Documented, but a copy that silently lacks part of a folder is a surprise later.
        ess_log.warn(
            "ess: warning: push: not copied (links to folders, sockets, FIFOs, devices): "
            + ess_log.some(plan.skipped, limit=3),
            progress,
        )
    limit = float(settings.get("ssh_timeout", 300.0))
    fleet = Fleet(nodes, access, settings, progress, limit=limit)
    start = fleet.start
    reached: dict[str, _Progress] = {node.id: _Progress() for node in nodes}
    results = fleet.run(
        "push", lambda node: _push_one(fleet.connector, node, plan, destination, fleet.deadline, reached[node.id])
    )
    out = []
    for node in nodes:
        output = results.get(node.id)
        if output is None:
            state = reached[node.id]
            output = PushOutput(
                node.id,
                state.destination,
                state.files,
                state.bytes,
                _partial(f"timed out after {limit:g}s", state, plan),
                state.connected,
                time.monotonic() - start,
            )
        out.append(output)
    return out


@dataclass
class _Progress:
    """How far one node got; read by the main thread if the node misses the deadline."""

    connected: bool = False
    destination: str = ""
    files: int = 0
    bytes: int = 0


def _partial(reason: str, state: _Progress, plan: Plan) -> str:
    if not state.connected or not (state.files or state.bytes):
        return reason
    return f"{reason} (after copying {state.files} of {len(plan.files)} files, {state.bytes} bytes)"


def _push_one(
    connector: Connector, node: Node, plan: Plan, destination: str, deadline: float, state: _Progress
) -> PushOutput:
    began = time.monotonic()

    def result(error: str = "") -> PushOutput:
        return PushOutput(
            node.id, state.destination, state.files, state.bytes, error, state.connected, time.monotonic() - began
        )

    try:
        client, _ = connector.connect_with_retry(node, deadline)
    except SshFailure as failure:
        return result(failure.reason)
    try:
        sftp = _open_sftp(connector, client, deadline)
        state.connected = True
        try:
            _Copier(sftp, plan, deadline, state).run(destination)
        finally:
            sftp.close()
    except SshFailure as failure:
        return result(_partial(failure.reason, state, plan))
    except _CopyError as failure:
        return result(_partial(str(failure), state, plan))
    finally:
        connector.release(client)
    return result()


def _open_sftp(connector: Connector, client: paramiko.SSHClient, deadline: float) -> paramiko.SFTPClient:
    """An SFTP session on the authenticated connection, every wait capped by the deadline."""
    import paramiko

    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise SshFailure("connection closed before SFTP could start", retry=False)
    budget = max(deadline - time.monotonic(), 0.01)
    try:
        channel = transport.open_session(timeout=min(budget, connector.connect_timeout))
        channel.settimeout(budget)
        channel.invoke_subsystem("sftp")
        return paramiko.SFTPClient(channel)
    except paramiko.SSHException as exc:
        if "subsystem" in str(exc).lower() or "channel closed" in str(exc).lower():
            raise SshFailure("the node offers no SFTP (enable sshd's sftp Subsystem)", retry=False) from None
        raise connector.classify(exc, budget) from None
    except Exception as exc:
        raise connector.classify(exc, budget) from None


class _CopyError(Exception):
    """A failed SFTP step, already worded for the user ("permission denied: /root/x")."""


def describe(exc: BaseException, path: str) -> str:
    """An SFTP/socket exception on ``path`` as one short reason (never file contents)."""
    if isinstance(exc, TimeoutError):
        return f"timed out writing {path}"
    code = getattr(exc, "errno", None)
    # paramiko raises IOError(errno, text) for the codes it knows, IOError(text) for the rest.
    text = str(getattr(exc, "strerror", None) or (exc.args[0] if exc.args else "") or type(exc).__name__)
    lowered = text.strip().lower()
    if code in (errno.EACCES, errno.EPERM) or "permission denied" in lowered:
        return f"permission denied: {path}"
    if "operation not permitted" in lowered:
        return f"operation not permitted: {path}"
    if code == errno.ENOSPC or "no space" in lowered:
        return f"no space left on the node: {path}"
    if code == errno.EDQUOT or "quota" in lowered:
        return f"disk quota exceeded on the node: {path}"
    if code == errno.EROFS or "read-only" in lowered or "write protect" in lowered:
        return f"read-only file system: {path}"
    if code == errno.ENOENT or "no such file" in lowered:
        return f"no such file or folder: {path}"
    if isinstance(exc, (EOFError, ConnectionError)) or "socket is closed" in lowered:
        return f"connection closed while writing {path}"
    return f"{text or type(exc).__name__}: {path}"


class _Copier:
    """The SFTP steps for one node; every failure becomes a :class:`_CopyError` naming its path."""

    def __init__(self, sftp: paramiko.SFTPClient, plan: Plan, deadline: float, state: _Progress) -> None:
        self.sftp = sftp
        self.plan = plan
        self.deadline = deadline
        self.state = state

    def run(self, destination: str) -> None:
        base = self.make_folders(self.absolute(destination))
        self.state.destination = str(base)
        for relative, _ in self.plan.folders:
            self.folder(base / relative)
        for item in self.plan.files:
            self.file(item, base / item.relative)
        # Folder modes last and deepest first: a read-only source folder must still be filled.
        for relative, mode in reversed(self.plan.folders):
            self.step(str(base / relative), self.sftp.chmod, str(base / relative), mode)

    # -- steps ----------------------------------------------------------------------------
    def step(self, path: str, call: Any, *args: Any) -> Any:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _CopyError(f"timed out before writing {path}")
        channel = self.sftp.get_channel()
        if channel is not None:
            channel.settimeout(remaining)
        try:
            return call(*args)
        except Exception as exc:
            raise _CopyError(describe(exc, path)) from None

    def absolute(self, destination: str) -> PurePosixPath:
        """``destination`` as an absolute path: relative (and ``~/...``) means below the login home."""
        text = destination.strip()
        if text == "~" or text.startswith("~/"):
            text = text[2:] or "."
        path = PurePosixPath(text)
        if path.is_absolute():
            return path
        home = PurePosixPath(self.step(".", self.sftp.normalize, "."))
        return home / path

    def make_folders(self, path: PurePosixPath) -> PurePosixPath:
        """``mkdir -p path``: one stat when it exists already, else create the missing parts."""
        if self.is_folder(path):
            return path
        for part in [*reversed(path.parents), path]:
            if not self.is_folder(part):
                self.create_folder(part)
        return path

    def is_folder(self, path: PurePosixPath) -> bool:
        try:
            info = self.step(str(path), self.sftp.stat, str(path))
        except _CopyError as failure:
            if str(failure).startswith("no such file"):
                return False
            raise
        if not stat.S_ISDIR(info.st_mode or 0):
            raise _CopyError(f"not a folder: {path}")
        return True

    def create_folder(self, path: PurePosixPath) -> None:
        try:
            self.step(str(path), self.sftp.mkdir, str(path))
        except _CopyError:
            # Another writer may have created it meanwhile (a second ess push); only fail if absent.
            if not self.is_folder(path):
                raise

    def folder(self, path: PurePosixPath) -> None:
        if not self.is_folder(path):
            self.create_folder(path)

    def file(self, item: LocalFile, path: PurePosixPath) -> None:
        remote = str(path)
        self.step(remote, self._write, item, remote)
        self.step(remote, self.sftp.chmod, remote, item.mode)
        self.state.files += 1

    def _write(self, item: LocalFile, remote: str) -> None:
        with item.path.open("rb") as source, self.sftp.open(remote, "wb") as target:
            # Pipelined: writes go out without waiting for each acknowledgement, which are all
            # read before the file counts as copied (confirm_writes: paramiko's close() reads
            # and drops them, so a full disk left short or empty files reported copied).
            target.set_pipelined(True)
            while chunk := source.read(CHUNK):
                target.write(chunk)
                channel = self.sftp.get_channel()
                if channel is not None:
                    channel.settimeout(max(self.deadline - time.monotonic(), 0.01))
            confirm_writes(self.sftp, target, remote, item.size)
        self.state.bytes += item.size


def confirm_writes(sftp: paramiko.SFTPClient, target: paramiko.SFTPFile, remote: str, size: int) -> None:
    """Raise the first error the server answered to any write of ``target``, or if it holds
    fewer than ``size`` bytes.

    paramiko sends pipelined writes under no owner and, at close(), consumes their answers
    without looking at them (5.1; an error surfaces only if it happens to be read while over
    100 writes are in flight). So every outstanding answer is read here, each raising the
    server's error (IOError "Failure" for ENOSPC under OpenSSH, which speaks SFTP v3).
    Should paramiko rename those internals, the size the server reports is checked instead,
    which still catches a short or empty file.
    """
    target.flush()  # the last buffered piece goes out as one more pipelined write
    pending = getattr(target, "_reqs", None)
    read_response = getattr(sftp, "_read_response", None)
    if pending is not None and read_response is not None:
        while pending:
            try:
                read_response(pending.popleft())
            except OSError as exc:
                if exc.errno is None and str(exc).strip().lower() == "failure":
                    # SFTP v3's catch-all: OpenSSH answers ENOSPC and EIO so.
                    raise OSError(f"the node failed a write (is its disk full?) of {size} bytes") from None
                raise
        return
    held = target.stat().st_size
    if held is not None and held < size:
        raise OSError(errno.ENOSPC, f"the node kept {held} of {size} bytes (no space left?)")
