"""User data: the user's script or cloud-config, composed with the parts ess needs.

The user's data (setting ``user_data``: a file, or one line starting with ``#``) is read
and checked before launch. With no part of ess's own it goes to EC2 unchanged; with ess's
parts (``lifetime.parts``) all go as one MIME multipart, which cloud-init runs part by
part: the user's part first, its bytes unchanged, never replaced.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ess.errors import UsageError
from ess.models import Settings

if TYPE_CHECKING:  # pragma: no cover
    from email.mime.nonmultipart import MIMENonMultipart

#: EC2's limit on user data, counted after base64 encoding.
MAX_USER_DATA = 16384
#: First-line markers cloud-init recognises, and the MIME type each part gets.
_MARKERS = (
    ("#!", "text/x-shellscript"),
    ("#cloud-config", "text/cloud-config"),
    ("#include", "text/x-include-url"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#part-handler", "text/part-handler"),
    ("#jinja", "text/jinja2"),
)
#: Lines longer than this cannot travel as 8bit MIME (RFC 5322); such a part goes base64.
_MAX_LINE = 998


@dataclass(frozen=True)
class Part:
    """One part of a MIME multipart user data: ``text/x-shellscript``, ``text/cloud-config``..."""

    content: str
    content_type: str = "text/x-shellscript"
    filename: str = "part"


def read(settings: Settings) -> Part | None:
    """The user's data as a Part (None when ``user_data`` is unset); UsageError when unusable."""
    raw = str(settings.get("user_data") or "")
    if not raw.strip():
        return None
    if raw.lstrip().startswith("#"):
        return Part(raw, content_type_of(raw), "user-data")
    path = _path(settings, raw)
    where = settings.where("user_data")
    if not path.exists():
        raise UsageError(f"{where}: {path} does not exist (give the path of a script or cloud-config file)")
    if path.is_dir():
        raise UsageError(f"{where}: {path} is a folder (give the path of a script or cloud-config file)")
    size = path.stat().st_size
    if size > MAX_USER_DATA:
        # Base64 only grows it: no need to read a large file to know it is too large.
        raise UsageError(_too_large(where, _encoded_size(size), "the file alone"))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {path} ({exc.strerror or exc}) (check its permissions)") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{where}: {path} is not UTF-8 text (byte {exc.start}; user data is a script or "
            "cloud-config, not a binary: gzip it yourself into a file cloud-init reads, or fix the file)"
        ) from None
    return Part(text, content_type_of(text), path.name)


def _path(settings: Settings, raw: str) -> Path:
    """From a file, relative to its folder; from a flag or the environment, to the current folder."""
    path = Path(raw).expanduser()
    if path.is_absolute():
        return path
    source = settings.source("user_data") if "user_data" in settings.values else ""
    base = Path.cwd() if source.startswith(("--", "ESS_")) else settings.config_dir
    return base / path


def content_type_of(text: str) -> str:
    """The MIME type cloud-init gives ``text``, by its first line (text/plain: run by nobody)."""
    for marker, content_type in _MARKERS:
        if text.startswith(marker):
            return content_type
    return "text/plain"


def compose(user: Part | None, ess_parts: list[Part]) -> str | None:
    """The user data to launch with: the user's unchanged when ess adds nothing, else a multipart."""
    if not ess_parts:
        return user.content if user is not None else None
    from email.mime.multipart import MIMEMultipart

    parts = ([user] if user is not None else []) + ess_parts
    # The same parts, the same bytes: a boundary from their hash, not a random one.
    digest = hashlib.sha256("\0".join(p.content_type + p.content for p in parts).encode()).hexdigest()
    boundary = f"==ess-{digest[:32]}=="
    message = MIMEMultipart("mixed", boundary=None if any(boundary in p.content for p in parts) else boundary)
    for part in parts:
        message.attach(_mime_part(part))
    from email.generator import BytesGenerator
    from io import BytesIO

    out = BytesIO()
    # Bytes, not str: a str generator re-encodes 8bit UTF-8 parts as base64. And
    # mangle_from_=False: a script line starting with "From " must reach the node as written.
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(message)
    return out.getvalue().decode("utf-8")


def _mime_part(part: Part) -> MIMENonMultipart:
    """A MIME part whose decoded body is ``part.content``, byte for byte.

    Plain text travels as is (7bit/8bit), so the user's script stays readable in the
    multipart; text with lines too long or carriage returns (which 8bit would not keep
    exact) goes base64.
    """
    from email.charset import BASE64, Charset
    from email.mime.nonmultipart import MIMENonMultipart

    maintype, _, subtype = part.content_type.partition("/")
    charset = Charset("utf-8")
    exact = "\r" not in part.content and all(len(line) <= _MAX_LINE for line in part.content.split("\n"))
    # None (no transfer encoding) is what the email docs allow; typeshed says int only.
    charset.body_encoding = None if exact else BASE64  # type: ignore[assignment]
    mime = MIMENonMultipart(maintype, subtype)
    mime.set_payload(part.content, charset)  # sets charset and Content-Transfer-Encoding
    mime.add_header("Content-Disposition", "attachment", filename=part.filename)
    return mime


def encoded(text: str) -> str:
    """``text`` as EC2 counts it, base64 (what a launch template's UserData must be)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def check_size(text: str, where: str, composed: bool) -> None:
    """UsageError naming the size and the limit when ``text`` is over EC2's limit once encoded."""
    size = _encoded_size(len(text.encode("utf-8")))
    if size > MAX_USER_DATA:
        raise UsageError(_too_large(where, size, "with ess's own parts" if composed else "as given"))


def _encoded_size(raw_bytes: int) -> int:
    return 4 * ((raw_bytes + 2) // 3)


def _too_large(where: str, size: int, what: str) -> str:
    return (
        f"{where}: user data is {size:,} bytes after base64 encoding ({what}), over "
        f"EC2's limit of {MAX_USER_DATA:,} (shorten it, or have it download the rest, e.g. from S3)"
    )
