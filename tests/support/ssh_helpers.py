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


class GarbageServer:
    """A TCP server on 127.0.0.1 that answers every connection with bytes that are not SSH."""

    def __init__(self, payload: bytes = b"\x00\xffgarbage, not an SSH banner\r\n" * 5) -> None:
        import socket

        self.payload = payload
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections = 0

    def __enter__(self) -> GarbageServer:
        import threading

        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _serve(self) -> None:
        import contextlib

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed by __exit__
                return
            self.connections += 1
            with conn, contextlib.suppress(OSError):
                conn.sendall(self.payload)
