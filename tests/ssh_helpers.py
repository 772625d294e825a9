"""Shared set-up for the SSH plugin tests: a user key, Access, Settings and a Progress sink."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ess.models import Access, Settings
from ess.progress import Progress
from ess.settings import resolve
from ess_ssh.plugin import SETTINGS


def make_settings(**cli: Any) -> Settings:
    """Settings holding the SSH keys, as the core resolves them, with ``cli`` overrides."""
    return resolve("test", {spec.key: spec for spec in SETTINGS}, cli=cli, env={})


def make_access(key_file: Path, username: str = "ess", cluster: str = "c1") -> Access:
    return Access(backend="test", cluster=cluster, username=username, key_file=key_file)


def quiet_progress() -> tuple[Progress, io.StringIO]:
    stream = io.StringIO()
    return Progress(stream=stream, tty=False), stream
