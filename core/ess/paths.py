"""Where ess keeps files of its own: config, state (local clusters), data (known_hosts).

``ESS_HOME`` puts all three under one folder: tests and throwaway runs use it so they
never touch the user's real directories.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError


def _base(kind: str) -> Path:
    home = os.environ.get("ESS_HOME")
    if home:
        return Path(home).expanduser() / kind
    import platformdirs

    finder = {
        "config": platformdirs.user_config_dir,
        "state": platformdirs.user_state_dir,
        "data": platformdirs.user_data_dir,
    }[kind]
    return Path(finder("ess"))


def config_dir() -> Path:
    return _base("config")


def state_dir() -> Path:
    """Local state (the local backend's node table). Created on demand, mode 0700."""
    return _ensure(_base("state"))


def data_dir() -> Path:
    """Data kept across runs (per-cluster known_hosts). Created on demand, mode 0700."""
    return _ensure(_base("data"))


def known_hosts_file(backend: str, cluster: str) -> Path:
    """The per-cluster known_hosts file (OpenSSH format) the SSH plugin trusts and extends.

    Kept in the core so the CLI (``ssh``, ``ssh-config``) finds it without importing a plugin.
    """
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{backend}-{cluster}")
    return data_dir() / "known_hosts" / safe


def _ensure(path: Path) -> Path:
    """``path`` as a folder ess can write, created (mode 0700) if missing.

    Anything in the way (ESS_HOME naming a file, a read-only or full disk, a folder ess may
    not write) is the user's setup, found before any work: one line and exit 2, never
    a traceback.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise UsageError(f"{path}: is a file, not a folder; ess keeps its files there {_what_to_do(path)}") from None
    except NotADirectoryError:
        blocker = next((parent for parent in path.parents if parent.is_file()), path.parent)
        raise UsageError(
            f"{blocker}: is a file, not a folder; ess keeps its files under it {_what_to_do(path)}"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot create ess's folder ({exc.strerror or exc}) {_what_to_do(path)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: ess's folder is not writable {_what_to_do(path)}")
    return path


def _what_to_do(path: Path) -> str:
    if os.environ.get("ESS_HOME"):
        return "(point ESS_HOME at a folder you can write, or unset it)"
    return f"(make {path} a folder you can write, or set ESS_HOME to one)"
