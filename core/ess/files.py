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
"""

from __future__ import annotations

import contextlib
import json
import os
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
