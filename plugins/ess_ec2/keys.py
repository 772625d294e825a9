"""Where the SSH private key of the EC2 key pair lives, and whether it is safe to use."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ess.errors import EssError, UsageError
from ess.files import InputFileError, check_input_file
from ess.models import TAG_CLUSTER, TAG_CREATED_BY, Settings
from ess.redact import mask_credentials, register_secret

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
    """The private key file, checked to exist, to be a regular file of a sane size and to be
    private (mode 0600 or narrower).

    A candidate that is there but is no regular file (a folder, a FIFO, a dangling link,
    /dev/zero) is an error naming it, never skipped for the next place: the SSH check and
    the adoption proof read the file whole, and "not found" would hide what is wrong.
    """
    key_pair_name(settings)
    tried = candidates(settings)
    where = settings.where("key_file" if settings.get("key_file") else "key_name")
    for path in tried:
        # Anything at the path counts (a dangling link too); lexists is False, never an
        # error, for a name the file system cannot even look up (too long).
        if os.path.lexists(path):
            check_private(path, where)
            return path
    looked = " or ".join(str(p) for p in tried)
    raise UsageError(
        f"{where}: private key not found at {looked} (save the key pair's .pem there, or set key_file to its path)"
    )


def check_private(path: Path, where: str) -> None:
    """A regular key file of at most :data:`ess.files.MAX_INPUT_BYTES`, which SSH accepts:
    not readable by others. Say what is wrong now, with what fixes it."""
    try:
        info = check_input_file(path)
    except InputFileError as exc:
        advice = (
            f"make it readable by you: chmod 600 {path}"
            if exc.kind == "denied"
            else "save the key pair's .pem there, or set key_file to its path"
        )
        if exc.kind == "too-big":
            advice = "a private key file is a few KB: " + advice
        raise UsageError(f"{where}: private key {path} {_clause(exc.reason)} ({advice})") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & ~0o600:
        raise UsageError(
            f"{where}: private key {path} has mode {mode:04o}, readable or writable "
            f"beyond its owner (run: chmod 600 {path})"
        )


def _clause(reason: str) -> str:
    """An :class:`ess.files.InputFileError` reason to follow a file's name."""
    return {"permission denied": "is not readable (permission denied)", "no such file": "does not exist"}.get(
        reason, reason
    )


# -- key pairs ess creates -----------------------------------------------------------------
#: EC2 allows 255 ASCII characters in a key pair name; ess saves NAME.pem, and a file name
#: holds at most 255 bytes on Linux and macOS file systems: 251 leaves room for ".pem".
KEY_PAIR_NAME_MAX = 255 - len(".pem")


def check_key_pair_name(name: str, where: str) -> str:
    """``name`` when ess can create a key pair of that name and use it afterwards; else UsageError.

    Usable means: ``key_name: NAME`` names it again (so no leading or trailing space, no
    line break, nothing key_name would read as a path: "/", "\\", a leading "~" or a
    ".pem" ending) and NAME.pem is a file in the config folder (so not "." or "..", and
    short enough). Checked before any AWS call: a name that fails here creates nothing.
    """
    shown = mask_credentials(repr(name) if len(name) <= 40 else f"{name[:40]!r}... ({len(name)} characters)")
    problem = ""
    if not name.strip():
        problem = "is empty (give a name such as pem_file)"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problem = "contains a control character such as a line break (use plain text)"
    elif "/" in name or "\\" in name:
        problem = (
            "contains '/' or '\\' (a key pair name is not a path: ess saves NAME.pem in the config "
            "file's folder; give a plain name such as pem_file)"
        )
    elif name in (".", ".."):
        problem = "is not a name ess can save as NAME.pem (give a plain name such as pem_file)"
    elif not name.isascii():
        problem = "has characters EC2 does not allow (EC2 key pair names are ASCII)"
    elif name != name.strip():
        problem = "starts or ends with a space (key_name could never name it: remove the spaces)"
    elif name.lower().endswith(".pem") or name.startswith("~"):
        problem = "would read as a file name in key_name (drop the .pem or the ~: ess adds .pem itself)"
    elif len(name) > KEY_PAIR_NAME_MAX:
        problem = f"is {len(name)} characters long (at most {KEY_PAIR_NAME_MAX}, so that NAME.pem fits a file name)"
    if problem:
        raise UsageError(f"{where}: key pair name {shown} {problem}")
    return name


def create_key_pair(aws: Aws, settings: Settings, name: str, tags: Mapping[str, str]) -> Path:
    """Create EC2 key pair ``name`` (tagged) and save its private key as ``<config folder>/<name>.pem``, 0600.

    Refuses to overwrite a local file or reuse an existing key pair. The private key is
    written without ever passing through a log or output; if saving fails, the key pair
    is deleted again so no unusable key pair is left behind.
    """
    from botocore.exceptions import ClientError

    check_key_pair_name(name, "key-pair create")
    path = settings.config_dir / f"{name}.pem"
    # lexists, not exists: it never raises (a name too long for the file system was an
    # internal error here), and a dangling link at NAME.pem is taken too (O_EXCL below).
    if os.path.lexists(path):
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
