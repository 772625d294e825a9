"""pytest fixtures for code that talks to EC2: fake credentials and a moto server.

Opt in from a conftest.py at the root of your tests (ess never loads them on its own, so
installing ess changes nothing in another project's pytest run)::

    pytest_plugins = ["ess.testing", "ess_ec2.testing"]

* ``fake_aws``: fake credentials, region us-east-1 and an endpoint that refuses
  connections, so a test that forgot moto fails fast and nothing can ever reach real AWS.
* ``moto_server``: one moto server on 127.0.0.1 for the session; yields its URL.
* ``moto_endpoint``: that server, reset for this test, with boto3 pointed at it through
  ``AWS_ENDPOINT_URL``.
* ``reset_moto(url)``: empty a moto server of everything tests made (what ``moto_endpoint``
  does first).

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

#: How long a reset over HTTP may take. moto's reset rebuilds every region backend a test
#: touched before throwing it away (0.1-0.9 s each, loaded with default AMIs), so on a busy
#: CI machine one took over 10 s; a hung server is still caught.
RESET_TIMEOUT = 120.0

#: URLs of the moto servers ``moto_server`` runs in this process (reset without HTTP).
_IN_PROCESS: set[str] = set()

__all__ = [
    "DEAD_ENDPOINT",
    "FAKE_ACCESS_KEY",
    "FAKE_SECRET_KEY",
    "fake_aws",
    "moto_endpoint",
    "moto_server",
    "reset_moto",
]


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
    url = f"http://{host}:{port}"
    _IN_PROCESS.add(url)
    yield url
    _IN_PROCESS.discard(url)
    server.stop()


def reset_moto(url: str) -> None:
    """Empty the moto server at ``url`` of every resource, in every account and region.

    A server ``moto_server`` runs in this process is emptied in place: its backends are
    dropped, and each is built again when a request next needs it. moto's own reset
    (``POST /moto-api/reset``, used for any other server) first rebuilds every backend it
    drops: 88 s of the suite's time in 328 resets, up to 6 s for one on a busy machine.
    """
    if url in _IN_PROCESS and _drop_backends():
        return
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=RESET_TIMEOUT).close()


def _drop_backends() -> bool:
    """moto's reset without its rebuild; False where this moto keeps its backends otherwise."""
    from moto.core import base_backend, model_instances

    loaded = getattr(base_backend.BackendDict, "_instances", None)
    reset_models = getattr(model_instances, "reset_model_data", None)
    if not isinstance(loaded, list) or reset_models is None:
        return False
    with base_backend.backend_lock:
        for backends in loaded:
            backends.clear()
        loaded.clear()
    reset_models()
    return True


@pytest.fixture
def moto_endpoint(moto_server: str, fake_aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A freshly reset moto server, with boto3 pointed at it through AWS_ENDPOINT_URL."""
    reset_moto(moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server
