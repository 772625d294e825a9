"""pytest fixtures for code that talks to EC2: fake credentials and a moto server.

Opt in from a conftest.py at the root of your tests (ess never loads them on its own, so
installing ess changes nothing in another project's pytest run)::

    pytest_plugins = ["ess.testing", "ess_ec2.testing"]

* ``fake_aws``: fake credentials, region us-east-1 and an endpoint that refuses
  connections, so a test that forgot moto fails fast and nothing can ever reach real AWS.
* ``moto_server``: one moto server on 127.0.0.1 for the session; yields its URL.
* ``moto_endpoint``: that server, reset for this test, with boto3 pointed at it through
  ``AWS_ENDPOINT_URL``.

They live with the EC2 plugin, not in ``ess.testing``, because they are about AWS: a
backend for another cloud (or ess's core) has no use for moto.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Fake credentials. The secret is distinctive so a secrets scan can look for it.
FAKE_ACCESS_KEY = "AKIAESSTESTFAKEKEY01"
FAKE_SECRET_KEY = "essFakeSecret/DoNotLeak+q9Vx2Lr7Tn4Wm1Yk8Zs3Ub6"

#: An endpoint nothing listens on: a test that forgot moto fails fast, never reaching AWS.
DEAD_ENDPOINT = "http://127.0.0.1:9"

__all__ = ["DEAD_ENDPOINT", "FAKE_ACCESS_KEY", "FAKE_SECRET_KEY", "fake_aws", "moto_endpoint", "moto_server"]


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
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_STS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server on loopback for the test session; yields its URL."""
    # moto reads its validation switches when imported: set before the import below.
    os.environ.setdefault("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str, fake_aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A freshly reset moto server, with boto3 pointed at it through AWS_ENDPOINT_URL."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server
