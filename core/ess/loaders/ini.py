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

SUFFIXES = {".conf", ".ini", ".cfg", ""}


@hookimpl(trylast=True)
def ess_load_config(path: Path, text: str) -> dict[str, dict[str, Any]] | None:
    if path.suffix.lower() not in SUFFIXES:
        return None
    return parse(text, str(path))


def parse(text: str, origin: str) -> dict[str, dict[str, Any]]:
    parser = configparser.ConfigParser(
        delimiters=(":", "="), interpolation=None, strict=True,
        comment_prefixes=("#", ";"), inline_comment_prefixes=None, default_section="\x00none",
    )
    try:
        parser.read_string(text, source=origin)
    except configparser.MissingSectionHeaderError as exc:
        raise UsageError(f"{origin}: line {exc.lineno}: a setting before any [section] "
                         "(start the file with a section such as [EC2])") from None
    except configparser.DuplicateSectionError as exc:
        raise UsageError(f"{origin}: line {exc.lineno}: section [{exc.section}] appears twice "
                         "(merge the two)") from None
    except configparser.DuplicateOptionError as exc:
        raise UsageError(f"{origin}: line {exc.lineno}: [{exc.section}] {exc.option} is set twice "
                         "(keep one)") from None
    except configparser.ParsingError as exc:
        lineno = exc.errors[0][0] if exc.errors else 0
        lines = text.splitlines()
        line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        raise UsageError(f"{origin}: line {lineno}: cannot parse {line.strip()!r} "
                         "(write key: value)") from None
    except configparser.Error as exc:
        raise UsageError(f"{origin}: {exc.message.splitlines()[0]}") from None
    return {name: dict(parser.items(name)) for name in parser.sections()}
