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
import re
from dataclasses import dataclass, field
from pathlib import Path

from ess.errors import UsageError
from ess.models import Settings
from ess.redact import register_secret, scrub

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
    """The CSV that ``aws_credential`` names: the path as given, else with ``.csv`` added."""
    path = settings.path("aws_credential")
    if path is None:
        return None
    if path.is_file():
        return path
    with_csv = path.with_name(path.name + ".csv")
    if with_csv.is_file():
        return with_csv
    where = settings.where("aws_credential")
    raise UsageError(
        f"{where}: credential file {path} not found, nor {with_csv.name} "
        "(download the access key CSV from the IAM console into the config folder, "
        "or remove aws_credential to use your AWS profile)"
    )


def load_credentials(settings: Settings) -> Credentials | None:
    """The key pair from ``aws_credential``, or None to let boto3's own chain decide."""
    path = credential_path(settings)
    if path is None:
        return None
    return parse_credential_file(path, settings.where("aws_credential"))


def parse_credential_file(path: Path, where: str) -> Credentials:
    """Parse one console CSV; every problem is a one-line UsageError naming ``where`` and ``path``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{where}: cannot read {path} ({exc.strerror}) (check the file's permissions: chmod 600 {path})"
        ) from None
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
