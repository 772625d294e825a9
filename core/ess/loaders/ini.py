"""INI loader: Essentia's ``instance.conf`` exactly as documented.

``key: value`` and ``key = value``, odd spacing (``instance_type:  m3.medium``),
``False``/``True``, ``#`` and ``;`` comment lines. Claims every file that is not TOML,
so a third-party loader (registered later, so asked first) can claim other formats.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

from ess import hookimpl
from ess.errors import UsageError
from ess.redact import mask_credentials

SUFFIXES = {".conf", ".ini", ".cfg", ""}


@hookimpl(trylast=True)
def ess_load_config(path: Path, text: str) -> dict[str, dict[str, Any]] | None:
    if path.suffix.lower() not in SUFFIXES:
        return None
    return parse(text, str(path))


def parse(text: str, origin: str) -> dict[str, dict[str, Any]]:
    parser = configparser.ConfigParser(
        delimiters=(":", "="),
        interpolation=None,
        strict=True,
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        default_section="\x00none",
    )
    try:
        parser.read_string(text, source=origin)
    except configparser.MissingSectionHeaderError as exc:
        raise UsageError(
            f"{origin}: line {exc.lineno}: a setting before any [section] (start the file with a section such as [EC2])"
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise UsageError(
            f"{origin}: line {exc.lineno}: section [{exc.section}] appears twice (merge the two)"
        ) from None
    except configparser.DuplicateOptionError as exc:
        raise UsageError(f"{origin}: line {exc.lineno}: [{exc.section}] {exc.option} is set twice (keep one)") from None
    except configparser.ParsingError as exc:
        # The line itself is never quoted: the config is parsed before any secret is known,
        # and a credential CSV row pasted here by mistake is exactly such a line.
        lineno = exc.errors[0][0] if exc.errors else 0
        raise UsageError(
            f"{origin}: line {lineno}: cannot parse this line, it is not `key: value` "
            "(fix or remove it; its text is not shown, as it could be a secret)"
        ) from None
    except configparser.Error as exc:
        raise UsageError(f"{origin}: {mask_credentials(exc.message.splitlines()[0])}") from None
    return {name: dict(parser.items(name)) for name in parser.sections()}
