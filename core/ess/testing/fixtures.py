"""Fixtures that keep tests out of the user's home folder and give them SSH servers to talk to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def ess_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ESS_HOME in a temporary folder, so state and known_hosts stay out of the user's home."""
    home = tmp_path / "ess-home"
    monkeypatch.setenv("ESS_HOME", str(home))
    return home


@dataclass
class SshNodes:
    """What ``ssh_node`` gives a test: the cluster key file, and ``start()`` for more servers."""

    key_file: Path
    username: str
    start: Callable[..., Any]


@pytest.fixture
def ssh_node(tmp_path: Path) -> Iterator[SshNodes]:
    """Start in-process SSH servers that accept one generated ed25519 cluster key.

    ``nodes = ssh_node``; ``server = nodes.start()``; ``server.node("n1")`` is an
    ``ess.models.Node`` pointing at it; ``nodes.key_file`` is the private key (0600).
    """
    from .sshd import SshNode, generate_ed25519_key, write_private_key

    key = generate_ed25519_key()
    key_file = write_private_key(key, tmp_path / "cluster_ed25519")
    started: list[Any] = []

    def start(**options: Any) -> Any:
        options.setdefault("username", "ess")
        server = SshNode(authorized_keys=[key], **options).start()
        started.append(server)
        return server

    yield SshNodes(key_file=key_file, username="ess", start=start)
    for server in started:
        server.stop()
