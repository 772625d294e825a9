"""Loading the cluster's private key: once per run, with errors a user can fix.

EC2 hands out RSA keys as PEM files; users bring OpenSSH ed25519 keys. Both load through
``paramiko.PKey.from_path``. Like OpenSSH, a key others can read is refused: the fix is one
``chmod`` and the message says which. Key material never appears in any message.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ess.errors import UsageError

if TYPE_CHECKING:
    import paramiko


def check_permissions(path: Path) -> None:
    """Refuse a key file that group or others can access (OpenSSH refuses it too)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(f"{path}: private key file not found (check key_name / the .pem path)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the private key ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{path}: is not a file (name the private key file)")
    if mode & 0o077:
        raise UsageError(
            f"{path}: permissions {stat.S_IMODE(mode):04o} are too open for a private key (chmod 600 {path})"
        )


def load_private_key(path: Path) -> paramiko.PKey:
    """The private key at ``path`` as a paramiko key, or a one-line UsageError naming the file."""
    import paramiko

    path = Path(path).expanduser()
    check_permissions(path)
    try:
        return paramiko.PKey.from_path(path)
    except PermissionError:
        raise UsageError(f"{path}: permission denied reading the private key (chmod 600 {path})") from None
    except paramiko.PasswordRequiredException:
        raise UsageError(
            f"{path}: the private key is protected by a passphrase "
            f"(use an unencrypted copy: ssh-keygen -p -N '' -f COPY)"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the private key ({exc.strerror})") from None
    except Exception:
        # cryptography's and paramiko's messages can quote bytes of the file: never show them.
        raise UsageError(
            f"{path}: not a private key ess can read (expected an RSA PEM or an "
            "OpenSSH ed25519/ECDSA/RSA private key file)"
        ) from None
