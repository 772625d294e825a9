"""Where the SSH private key of the EC2 key pair lives, and whether it is safe to use."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ess.errors import EssError, UsageError
from ess.models import TAG_CLUSTER, TAG_CREATED_BY, Settings
from ess.redact import register_secret

from .client import error_code

if TYPE_CHECKING:  # pragma: no cover
    from .client import Aws


def key_pair_name(settings: Settings) -> str:
    """The EC2 key pair name: ``key_name`` as given, or the stem when it names a .pem path."""
    raw = str(settings.get("key_name") or "").strip()
    if not raw:
        raise UsageError(
            f"{settings.where('key_name')}: no key pair is set (add `key_name: NAME`, "
            "the EC2 key pair whose NAME.pem you hold)"
        )
    if _looks_like_path(raw):
        return Path(raw).stem
    return raw


def _looks_like_path(raw: str) -> bool:
    return "/" in raw or "\\" in raw or raw.lower().endswith(".pem") or raw.startswith("~")


def candidates(settings: Settings) -> list[Path]:
    """Where the private key may be, in the order they are tried."""
    if settings.get("key_file"):
        path = settings.path("key_file")
        return [path] if path is not None else []
    raw = str(settings.get("key_name") or "").strip()
    if _looks_like_path(raw):
        path = settings.path("key_name")
        return [path] if path is not None else []
    return [settings.config_dir / f"{raw}.pem", Path.home() / ".ssh" / f"{raw}.pem"]


def key_file(settings: Settings) -> Path:
    """The private key file, checked to exist and to be private (mode 0600 or narrower)."""
    key_pair_name(settings)
    tried = candidates(settings)
    for path in tried:
        if path.is_file():
            check_private(path, settings.where("key_file" if settings.get("key_file") else "key_name"))
            return path
    where = settings.where("key_file" if settings.get("key_file") else "key_name")
    looked = " or ".join(str(p) for p in tried)
    raise UsageError(
        f"{where}: private key not found at {looked} (save the key pair's .pem there, or set key_file to its path)"
    )


def check_private(path: Path, where: str) -> None:
    """SSH refuses a key others can read; say so now, with the command that fixes it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~0o600:
        raise UsageError(
            f"{where}: private key {path} has mode {mode:04o}, readable or writable "
            f"beyond its owner (run: chmod 600 {path})"
        )


# -- key pairs ess creates -----------------------------------------------------------------
def create_key_pair(aws: Aws, settings: Settings, name: str, tags: Mapping[str, str]) -> Path:
    """Create EC2 key pair ``name`` (tagged) and save its private key as ``<config folder>/<name>.pem``, 0600.

    Refuses to overwrite a local file or reuse an existing key pair. The private key is
    written without ever passing through a log or output; if saving fails, the key pair
    is deleted again so no unusable key pair is left behind.
    """
    from botocore.exceptions import ClientError

    path = settings.config_dir / f"{name}.pem"
    if path.exists():
        raise UsageError(
            f"key-pair create {name}: {path} already exists (use another name, or move the "
            "file away; nothing was changed)"
        )
    try:
        found = aws.ec2.describe_key_pairs(KeyNames=[name]).get("KeyPairs", [])
    except ClientError as exc:
        if error_code(exc) != "InvalidKeyPair.NotFound":
            raise
        found = []
    if found:
        raise UsageError(
            f"key-pair create {name}: key pair {name!r} already exists in {aws.region} (set "
            "key_name to it and save its .pem next to the config, or pick another name)"
        )
    reply = aws.ec2.create_key_pair(
        KeyName=name,
        KeyType="rsa",
        TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": [{"Key": k, "Value": str(v)} for k, v in tags.items()]}
        ],
    )
    material = str(reply.pop("KeyMaterial"))
    register_secret(material)
    try:
        # O_EXCL: never follow or clobber a file that appeared meanwhile; 0600 from the start.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(material if material.endswith("\n") else material + "\n")
    except OSError as exc:
        aws.ec2.delete_key_pair(KeyName=name)
        raise EssError(
            f"key-pair create {name}: cannot save the private key to {path} "
            f"({exc.strerror or exc}); the key pair was deleted again"
        ) from None
    return path


def purge_key_pairs(aws: Aws, cluster: str) -> list[str]:
    """Delete the key pairs tagged ``ess:cluster=<cluster>`` and ``ess:created-by``.

    The local .pem file is kept: deleting files on the master is not ess's to decide.
    """
    filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}, {"Name": "tag-key", "Values": [TAG_CREATED_BY]}]
    deleted: list[str] = []
    for pair in aws.ec2.describe_key_pairs(Filters=filters).get("KeyPairs", []):
        tags = {t["Key"]: t.get("Value", "") for t in pair.get("Tags", []) or []}
        if tags.get(TAG_CLUSTER) != cluster or TAG_CREATED_BY not in tags:
            continue  # an emulator ignoring the filter must not cost the user a key pair
        aws.ec2.delete_key_pair(KeyName=pair["KeyName"])  # moto ignores KeyPairId
        deleted.append(f"key pair {pair['KeyName']} ({pair['KeyPairId']})")
    return deleted
