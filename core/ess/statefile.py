"""A JSON file shared by concurrent ``ess`` commands: read-modify-write under a file lock.

For backends that keep a small registry on this machine (``hosts``, a plugin's pool). The
file is replaced atomically (temp file + ``os.replace``), so a crash never leaves half a
file and no concurrent writer's change is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import EssError, UsageError

LOCK_TIMEOUT = 60.0


@contextmanager
def locked_json(path: Path, *, write: bool = False, default: Any = None) -> Iterator[Any]:
    """Yield the file's data (``default`` or {} if missing); with ``write``, save it after.

    Every way the file system can refuse (a full disk, a read-only or foreign folder, a
    file where a folder should be) is one line naming the file: exit 2 when it is found
    before the command did anything (the folder, the lock), exit 1 when saving fails, in
    which case the file keeps its previous content and no temporary file is left.
    """
    from filelock import FileLock, Timeout

    empty = {} if default is None else default
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT)
        lock.acquire()
    except Timeout:
        raise EssError(f"{path}: another ess command has held its lock for {LOCK_TIMEOUT:.0f}s "
                       "(wait for it, or remove the .lock file if no ess command is running)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot use ess's state file here ({_reason(exc)}); "
                         "make its folder writable, or point ESS_HOME at one that is") from None
    try:
        data = _read(path, empty)
        yield data
        if write:
            _save(path, data)
    finally:
        lock.release()


def _read(path: Path, empty: Any) -> Any:
    try:
        data = json.loads(path.read_text()) if path.exists() else empty
    except json.JSONDecodeError as exc:
        raise EssError(f"{path}: damaged state file ({exc.msg} at line {exc.lineno}); "
                       "move it away to start afresh") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EssError(f"{path}: cannot read the state file ({_reason(exc)})") from None
    if not isinstance(data, type(empty)):
        raise EssError(f"{path}: damaged state file (it holds {type(data).__name__}, not "
                       f"{type(empty).__name__}); move it away to start afresh") from None
    return data


def _save(path: Path, data: Any) -> None:
    """Replace ``path`` atomically; on any failure the old content stays and no temp file."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())  # a full disk shows here, not after the rename
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise EssError(f"{path}: could not save the state file ({_reason(exc)}); it is unchanged "
                       "and this command's change to it was not recorded") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__
