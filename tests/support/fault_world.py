"""A lean EC2 world for the fault matrix and the bad-input corpus, plus the reliability log.

:func:`lean_world` is ``ec2_world.make_world`` made cheaper per test: one RSA key for the
session, imported rather than created (moto generates an RSA key per ``create_key_pair``). The
``ESS_RELIABILITY_LOG`` file gets one JSON line per case; ``tests/support/reliability_summary.py``
turns it into the table in docs/reliability.md.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from support.ec2_world import ESSENTIA_CONF, World, make_world

#: The Name every node gets by default; the foreign instance wears it too.
WORKER_NAME = "Essentia Worker Node"


@functools.cache
def session_key() -> tuple[str, str]:
    """(private key PEM, OpenSSH public key) made once: every world imports the same pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


def lean_world(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conf_text: str = ESSENTIA_CONF) -> World:
    """:func:`ec2_world.make_world` with the session's imported key pair: cheap enough per case."""
    assert endpoint == os.environ["AWS_ENDPOINT_URL"], "the world is built on the test's moto endpoint"
    return make_world(tmp_path, monkeypatch, conf_text, key=session_key())


def record(**fields: Any) -> None:
    """Append one case's figures to $ESS_RELIABILITY_LOG (nothing when it is not set)."""
    log = os.environ.get("ESS_RELIABILITY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps(fields, sort_keys=True) + "\n")
