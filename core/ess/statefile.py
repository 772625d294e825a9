"""A JSON file shared by concurrent ``ess`` commands: read-modify-write under a file lock.

For backends that keep a small registry on this machine (``hosts``, a plugin's pool). The
file is replaced atomically (temp file + ``os.replace``), so a crash never leaves half a
file and no concurrent writer's change is lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import EssError

LOCK_TIMEOUT = 60.0


@contextmanager
def locked_json(path: Path, *, write: bool = False, default: Any = None) -> Iterator[Any]:
    """Yield the file's data (``default`` or {} if missing); with ``write``, save it after."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT):
            try:
                data = json.loads(path.read_text()) if path.exists() else ({} if default is None else default)
            except json.JSONDecodeError as exc:
                raise EssError(f"{path}: damaged state file ({exc.msg} at line {exc.lineno}); "
                               "move it away to start afresh") from None
            yield data
            if write:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
                with os.fdopen(fd, "w") as handle:
                    json.dump(data, handle, indent=1, sort_keys=True)
                os.replace(tmp, path)
    except Timeout:
        raise EssError(f"{path}: another ess command has held its lock for {LOCK_TIMEOUT:.0f}s "
                       "(wait for it, or remove the .lock file if no ess command is running)") from None
