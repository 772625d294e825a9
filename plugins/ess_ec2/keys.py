"""Where the SSH private key of the EC2 key pair lives, and whether it is safe to use."""

from __future__ import annotations

import stat
from pathlib import Path

from ess.errors import UsageError
from ess.models import Settings


def key_pair_name(settings: Settings) -> str:
    """The EC2 key pair name: ``key_name`` as given, or the stem when it names a .pem path."""
    raw = str(settings.get("key_name") or "").strip()
    if not raw:
        raise UsageError(f"{settings.where('key_name')}: no key pair is set (add `key_name: NAME`, "
                         "the EC2 key pair whose NAME.pem you hold)")
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
    raise UsageError(f"{where}: private key not found at {looked} (save the key pair's .pem there, "
                     "or set key_file to its path)")


def check_private(path: Path, where: str) -> None:
    """SSH refuses a key others can read; say so now, with the command that fixes it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~0o600:
        raise UsageError(f"{where}: private key {path} has mode {mode:04o}, readable or writable "
                         f"beyond its owner (run: chmod 600 {path})")
