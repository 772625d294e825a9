"""The AWS access key CSV that the IAM console downloads, read without leaking the secret.

Two layouts exist in the wild (and a BOM and CRLF line ends with both)::

    User Name,Access Key Id,Secret Access Key        (older console)
    Access key ID,Secret access key                   (current console)

Extra columns (Password, Console login link) are ignored. The secret is kept in a field
that ``repr`` hides, and is registered with :mod:`ess.redact`, which scrubs it from
every output and log line.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ess.errors import UsageError
from ess.files import InputFileError, read_input_file
from ess.models import Settings
from ess.redact import mask_credentials, register_secret, scrub

_ACCESS_KEY = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")
_ACCESS_COLUMN = "access key id"
_SECRET_COLUMN = "secret access key"


@dataclass(frozen=True)
class Credentials:
    """An access key pair; ``secret_key`` never shows in ``repr`` or ``str``."""

    access_key: str
    secret_key: str = field(repr=False)
    source: Path | None = None


def redact(text: str) -> str:
    """``text`` with every secret this process has read replaced by ****."""
    return scrub(text)


def credential_path(settings: Settings) -> Path | None:
    """The CSV that ``aws_credential`` names: the path as given, else with ``.csv`` added.

    A regular file wins; failing that, a name that is there but is no regular file (a
    folder, a FIFO, a dangling link) is returned, for :func:`parse_credential_file` to say
    what it is: "not found" would send the user looking for a file that is there.
    """
    path = settings.path("aws_credential")
    if path is None:
        return None
    with_csv = path.with_name(path.name + ".csv")
    for candidate in (path, with_csv):
        if _is_file(candidate):
            return candidate
    for candidate in (path, with_csv):
        if os.path.lexists(candidate):
            return candidate
    where = settings.where("aws_credential")
    raw = str(settings.get("aws_credential"))
    if mask_credentials(raw) != raw:
        # The key itself pasted where its file's name goes: say so, and quote nothing of it
        # (the message below would show a piece of it, its last part after a "/").
        raise UsageError(
            f"{where}: the value looks like an AWS access key or secret key, not a file name "
            "(name the access key CSV the IAM console downloads here, never the key itself)"
        )
    raise UsageError(
        f"{where}: credential file {path} not found, nor {with_csv.name} "
        "(download the access key CSV from the IAM console into the config folder, "
        "or remove aws_credential to use your AWS profile)"
    )


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name cannot even be looked up (too long for the
    file system): that is "not found" to the user, never an internal error."""
    try:
        return path.is_file()
    except OSError:
        return False


def load_credentials(settings: Settings) -> Credentials | None:
    """The key pair from ``aws_credential``, or None to let boto3's own chain decide."""
    path = credential_path(settings)
    if path is None:
        return None
    return parse_credential_file(path, settings.where("aws_credential"))


def parse_credential_file(path: Path, where: str) -> Credentials:
    """Parse one console CSV; every problem is a one-line UsageError naming ``where`` and ``path``.

    Read only as a regular file of at most :data:`ess.files.MAX_INPUT_BYTES` (the CSV is
    about 100 bytes): a FIFO or a device never hangs ess, a huge file never fills memory.
    """
    try:
        data = read_input_file(path)
    except InputFileError as exc:
        if exc.kind == "denied":
            advice = f"check the file's permissions: chmod 600 {path}"
        else:
            advice = "point aws_credential at the access key CSV the IAM console downloads"
        raise UsageError(f"{where}: cannot read {path}: {_as_clause(exc.reason)} ({advice})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(
            f"{where}: {path} is not a text CSV file (download the access key CSV again from the IAM console)"
        ) from None
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text))]
    except csv.Error:
        rows = []
    rows = [row for row in rows if any(row)]
    header = [" ".join(cell.lower().split()) for cell in rows[0]] if rows else []
    if _ACCESS_COLUMN not in header or _SECRET_COLUMN not in header:
        raise UsageError(
            f"{where}: {path} is not an AWS access key CSV: expected a header with "
            "'Access key ID' and 'Secret access key' (download the access key CSV "
            "from the IAM console)"
        )
    data_rows = rows[1:]
    if not data_rows:
        raise UsageError(
            f"{where}: {path} has a header but no access key row "
            "(download the access key CSV again from the IAM console)"
        )
    if len(data_rows) > 1:
        raise UsageError(
            f"{where}: {path} holds {len(data_rows)} access keys; ess needs exactly one (keep one row under the header)"
        )
    row = data_rows[0]
    access_at, secret_at = header.index(_ACCESS_COLUMN), header.index(_SECRET_COLUMN)
    access = row[access_at] if access_at < len(row) else ""
    secret = row[secret_at] if secret_at < len(row) else ""
    if secret:
        # Remember it before any further check, so even a message about this row is scrubbed.
        register_secret(secret)
    if not _ACCESS_KEY.match(access) or len(secret) < 16 or any(ch.isspace() for ch in secret):
        raise UsageError(
            f"{where}: {path} has a malformed access key row (download the access key CSV again from the IAM console)"
        )
    return Credentials(access_key=access, secret_key=secret, source=path)


def _as_clause(reason: str) -> str:
    """An :class:`ess.files.InputFileError` reason after "cannot read PATH: " ("it is a folder...")."""
    return f"it {reason}" if reason.startswith("is ") else reason
