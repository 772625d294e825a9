"""Fixtures that keep tests away from real AWS and from the user's home folder."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Fake credentials. The secret is distinctive so the secrets scan can look for it.
FAKE_ACCESS_KEY = "AKIAESSTESTFAKEKEY01"
FAKE_SECRET_KEY = "essFakeSecret/DoNotLeak+q9Vx2Lr7Tn4Wm1Yk8Zs3Ub6"

#: An endpoint nothing listens on: a test that forgot moto fails fast, never reaching AWS.
DEAD_ENDPOINT = "http://127.0.0.1:9"


@pytest.fixture
def ess_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "ess-home"
    monkeypatch.setenv("ESS_HOME", str(home))
    return home


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Fake credentials, region us-east-1 and a dead endpoint; no shared AWS config files."""
    env = {
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": DEAD_ENDPOINT,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_EC2",
                 "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server on loopback for the test session; yields its URL."""
    os.environ.setdefault("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str, fake_aws: dict[str, str],
                  monkeypatch: pytest.MonkeyPatch) -> str:
    """A freshly reset moto server, with boto3 pointed at it through AWS_ENDPOINT_URL."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


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
