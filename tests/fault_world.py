"""A lean EC2 world for the fault matrix and the bad-input corpus, plus the reliability log.

Same shape as :func:`tests.ec2_world.make_world` (and the same call-counting seam), but
cheaper per test: one boto3 client and one RSA key for the session, and the key pair is
imported rather than created (moto generates an RSA key per ``create_key_pair``). The
``ESS_RELIABILITY_LOG`` file gets one JSON line per case; ``tests/reliability_summary.py``
turns it into the table in docs/reliability.md.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from ec2_world import ESSENTIA_CONF, World, install_call_counter

#: The Name every node gets by default; the foreign instance wears it too.
WORKER_NAME = "Essentia Worker Node"


@functools.cache
def session_key() -> tuple[str, str]:
    """(private key PEM, OpenSSH public key) made once: every world imports the same pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


@functools.cache
def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="AKIAESSTESTFAKEKEY01", aws_secret_access_key="fake-secret-for-moto")


def quiet_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """The moto server thread logs every request; in-process, that lands in the CLI's stderr."""
    monkeypatch.setattr(logging.getLogger("werkzeug"), "disabled", True)


def lean_world(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               conf_text: str = ESSENTIA_CONF) -> World:
    """Key pair ``pem_file`` (its PEM 0600 next to instance.conf), group essentia-access, counter."""
    from ess_ec2.backend import Ec2Backend

    assert endpoint.startswith("http://127.0.0.1"), "moto only"
    quiet_moto(monkeypatch)
    # No default AMIs in the fresh account (set before its first EC2 call): ~0.3 s saved per
    # case. The SSM default image still resolves, and launches do not validate the AMI.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    ec2 = _client(endpoint)
    image = str(ec2.register_image(Name="al2023-ess-fault", Architecture="x86_64",
                                   RootDeviceName="/dev/xvda")["ImageId"])
    private, public = session_key()
    folder = tmp_path / "conf"
    folder.mkdir()
    conf = folder / "instance.conf"
    conf.write_text(conf_text)
    ec2.import_key_pair(KeyName="pem_file", PublicKeyMaterial=public.encode())
    pem = folder / "pem_file.pem"
    pem.write_text(private)
    pem.chmod(0o600)
    group_id = ec2.create_security_group(GroupName="essentia-access", Description="ess tests")["GroupId"]
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    calls = install_call_counter(monkeypatch)
    backend = Ec2Backend()
    sleeps: list[float] = []
    backend.sleep = sleeps.append
    fields: dict[str, Any] = dict(folder=folder, conf=conf, pem=pem, ec2=ec2, group_id=group_id, calls=calls,
                                  backend=backend, sleeps=sleeps, progress_stream=io.StringIO())
    if "image" in World.__dataclass_fields__:  # the world launches foreign nodes from it
        fields["image"] = image
    return World(**fields)


def record(**fields: Any) -> None:
    """Append one case's figures to $ESS_RELIABILITY_LOG (nothing when it is not set)."""
    log = os.environ.get("ESS_RELIABILITY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps(fields, sort_keys=True) + "\n")
