"""SSH key material for local clusters: the cluster login key and each node's host key.

Keys are made with ``cryptography`` (already required by paramiko and asyncssh) in the
OpenSSH format, so OpenSSH, paramiko and asyncssh all read them. Private keys are created
with mode 0600 from the first byte: the file is opened with that mode, never chmod-ed
after the key was written.
"""

from __future__ import annotations

from pathlib import Path

from ess.errors import UsageError
from ess.files import atomic_write


def generate_ed25519(private_path: Path, comment: str) -> str:
    """Write a new ed25519 private key (0600) and its ``.pub``; return the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    line = f"{public} {comment}"
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(private_path, private)  # 0600 from its first byte, never chmod-ed after
    atomic_write(public_path(private_path), line + "\n", mode=0o644)
    return line


def public_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def public_key_of(private_path: Path, where: str) -> str:
    """The OpenSSH public key line (type and base64, no comment) of a private key file.

    Reads OpenSSH-format keys and the PEM RSA/EC keys EC2 hands out. Errors name the file
    and never include key material.
    """
    from cryptography.hazmat.primitives import serialization

    try:
        data = private_path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"{where}: {private_path} does not exist (fix key_file, or leave it unset to let ess generate a key)"
        ) from None
    except IsADirectoryError:
        raise UsageError(f"{where}: {private_path} is a folder (name the private key file)") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {private_path} ({exc.strerror})") from None
    loaders = (serialization.load_ssh_private_key, serialization.load_pem_private_key)
    for load in loaders:
        try:
            key = load(data, password=None)
        except TypeError:
            raise UsageError(
                f"{where}: {private_path} is protected by a passphrase (use a key without one, or leave key_file unset)"
            ) from None
        except Exception:  # any parse failure means "not this format": try the next one
            continue
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return public.decode()
    raise UsageError(f"{where}: {private_path} is not an SSH private key (use an OpenSSH or PEM private key file)")
