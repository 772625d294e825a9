"""The one way ess writes a file other ess commands may read: atomically, privately, locked.

* :func:`atomic_write` replaces a file in one step (temp file in the same folder, then
  ``os.replace``): a reader, a crash or a full disk never sees or leaves half a file, and
  the temp file is created with the final mode, so its bytes are never readable by others.
* :func:`file_lock` serialises read-modify-write between ess processes (``filelock``).
* :func:`locked_json` combines them for a small JSON registry shared by concurrent
  commands (the hosts backend, a plugin's pool): read, change, replace, under the lock.

Callers word their own errors: these functions raise ``OSError`` as it came (naming the
file in ``exc.filename``), except :func:`locked_json`, whose one-line messages are part of
the plugin API (``ess.statefile`` re-exports it for plugins written against 0.1).

* :func:`read_input_file` is the one way ess reads a file the *user* points it at (a config,
  a credential CSV) and :func:`check_input_file` the check of one another program reads (a
  private key): a regular file of at most :data:`MAX_INPUT_BYTES`, or :class:`InputFileError`
  saying what it is instead, for the caller to word.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import EssError, UsageError

#: Seconds :func:`locked_json` waits for another ess command holding the file's lock.
LOCK_TIMEOUT = 60.0


def atomic_write(
    path: Path, data: str | bytes, *, mode: int = 0o600, fsync: bool = False, encoding: str = "utf-8"
) -> None:
    """Replace ``path`` with ``data``; on any failure the old file stays and no temp file does.

    ``mode`` is the new file's mode whatever the umask (0600 by default: most of what ess
    writes is state, keys or host keys). ``fsync`` flushes the data to disk before the
    rename, so a full disk fails here, while the old file is still in place, rather than
    after it (use it where losing the write would lose track of something).
    """
    import tempfile  # imported here: `ess --help` loads this module and never writes

    # mkstemp: a unique name opened O_EXCL with mode 0600, so two writers never share a temp
    # file and nothing planted at a predictable name is followed.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode != 0o600:
                os.fchmod(handle.fileno(), mode)
            handle.write(data.encode(encoding) if isinstance(data, str) else data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave the temp file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextmanager
def file_lock(lock_path: Path, *, timeout: float, busy: str, mode: int = 0o600) -> Iterator[None]:
    """Hold ``lock_path`` (a ``filelock`` lock file, created ``mode``) for the block.

    After ``timeout`` seconds of another process holding it: :class:`EssError` with the
    caller's ``busy`` message. An ``OSError`` (no folder, read-only, full) propagates for
    the caller to word. The lock file is kept afterwards: deleting a lock file others may
    be waiting on is a race.
    """
    from filelock import FileLock, Timeout  # not imported by `ess --help`

    lock = FileLock(str(lock_path), timeout=timeout, mode=mode)
    try:
        lock.acquire()
    except Timeout:
        raise EssError(busy) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def locked_json(path: Path, *, write: bool = False, default: Any = None) -> Iterator[Any]:
    """Yield the file's data (``default`` or {} if missing); with ``write``, save it after.

    Every way the file system can refuse (a full disk, a read-only or foreign folder, a
    file where a folder should be) is one line naming the file: exit 2 when it is found
    before the command did anything (the folder, the lock), exit 1 when saving fails, in
    which case the file keeps its previous content and no temporary file is left.
    """
    empty = {} if default is None else default
    busy = (
        f"{path}: another ess command has held its lock for {LOCK_TIMEOUT:.0f}s "
        "(wait for it, or remove the .lock file if no ess command is running)"
    )
    with contextlib.ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            stack.enter_context(file_lock(Path(str(path) + ".lock"), timeout=LOCK_TIMEOUT, busy=busy, mode=0o644))
        except OSError as exc:
            raise UsageError(
                f"{path}: cannot use ess's state file here ({_reason(exc)}); "
                "make its folder writable, or point ESS_HOME at one that is"
            ) from None
        data = _read(path, empty)
        yield data
        if write:
            _save(path, data)


def _read(path: Path, empty: Any) -> Any:
    try:
        data = json.loads(path.read_text()) if path.exists() else empty
    except json.JSONDecodeError as exc:
        raise EssError(
            f"{path}: damaged state file ({exc.msg} at line {exc.lineno}); move it away to start afresh"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EssError(f"{path}: cannot read the state file ({_reason(exc)})") from None
    if not isinstance(data, type(empty)):
        raise EssError(
            f"{path}: damaged state file (it holds {type(data).__name__}, not "
            f"{type(empty).__name__}); move it away to start afresh"
        ) from None
    return data


def _save(path: Path, data: Any) -> None:
    try:
        # fsync: a full disk shows before the rename, so the old registry stays intact.
        atomic_write(path, json.dumps(data, indent=1, sort_keys=True), fsync=True)
    except OSError as exc:
        raise EssError(
            f"{path}: could not save the state file ({_reason(exc)}); it is unchanged "
            "and this command's change to it was not recorded"
        ) from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


# -- files the user points ess at -----------------------------------------------------------
#: The most ess reads of a config file, a credential CSV or a private key. Each is a few KB;
#: a wrong path to a log, a dump or a disk image must cost one line, not gigabytes of memory.
MAX_INPUT_BYTES = 1024 * 1024


class InputFileError(Exception):
    """A file the user named cannot be read as one; ``reason`` completes "PATH: ...".

    ``kind`` lets a caller choose what to advise: "missing", "dangling", "loop", "folder",
    "special" (FIFO, device, socket), "too-big", "denied" or "other".
    """

    def __init__(self, path: Path, kind: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.kind, self.reason = path, kind, reason


def check_input_file(path: Path, limit: int = MAX_INPUT_BYTES) -> os.stat_result:
    """``path``'s stat when it is a regular file of at most ``limit`` bytes; else InputFileError.

    By ``stat``, without opening it: opening a FIFO blocks until someone writes to it, and
    a device such as /dev/zero never ends.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise _os_problem(path, exc) from None
    _check_stat(path, info, limit)
    return info


def read_input_file(path: Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; else InputFileError.

    Checked by ``stat`` before opening, and again on the open file (it may have been
    swapped meanwhile); opened non-blocking, so a FIFO put there in between cannot hang
    ess; and never more than ``limit`` + 1 bytes read, so a file that grows is caught too.
    """
    check_input_file(path, limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_problem(path, exc) from None
    with os.fdopen(fd, "rb") as handle:
        _check_stat(path, os.fstat(fd), limit)
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise _os_problem(path, exc) from None
    if len(data) > limit:
        raise InputFileError(path, "too-big", f"is larger than {_size(limit)}, the most ess reads of such a file")
    return data


def _check_stat(path: Path, info: os.stat_result, limit: int) -> None:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise InputFileError(path, "folder", "is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise InputFileError(path, "special", f"is {_special(mode)}, not a regular file")
    if info.st_size > limit:
        raise InputFileError(
            path, "too-big", f"is {_size(info.st_size)}, more than the {_size(limit)} ess reads of such a file"
        )


def _os_problem(path: Path, exc: OSError) -> InputFileError:
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            target = os.readlink(path)
            return InputFileError(path, "dangling", f"is a symbolic link to {target}, which does not exist")
        return InputFileError(path, "missing", "no such file")
    if exc.errno == errno.ELOOP:
        return InputFileError(path, "loop", "is a symbolic link loop")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return InputFileError(path, "denied", "permission denied")
    if exc.errno == errno.EISDIR:
        return InputFileError(path, "folder", "is a folder, not a file")
    return InputFileError(path, "other", f"cannot read ({_reason(exc)})")


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "an unusual kind of file"  # pragma: no cover - no other kind exists on Linux or macOS


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB".replace(".0 MiB", " MiB")
    if count >= 1024:
        return f"{count / 1024:.1f} KiB".replace(".0 KiB", " KiB")
    return f"{count} bytes"
