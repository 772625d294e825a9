"""Where ess keeps files of its own: config, state (local clusters), data (known_hosts).

``ESS_HOME`` puts all three under one folder: tests and throwaway runs use it so they
never touch the user's real directories.
"""

from __future__ import annotations

import os
from pathlib import Path


def _base(kind: str) -> Path:
    home = os.environ.get("ESS_HOME")
    if home:
        return Path(home).expanduser() / kind
    import platformdirs

    finder = {"config": platformdirs.user_config_dir, "state": platformdirs.user_state_dir,
              "data": platformdirs.user_data_dir}[kind]
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
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
