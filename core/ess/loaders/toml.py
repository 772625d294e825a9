"""TOML loader: the same keys as instance.conf, with real types (``instance_count = 2``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ess import hookimpl
from ess.errors import UsageError
from ess.redact import mask_credentials

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@hookimpl
def ess_load_config(path: Path, text: str) -> dict[str, dict[str, Any]] | None:
    if path.suffix.lower() != ".toml":
        return None
    return parse(text, str(path))


def parse(text: str, origin: str) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib quotes keys and characters of the text: mask anything credential-shaped.
        raise UsageError(f"{origin}: {mask_credentials(str(exc))} (fix the TOML syntax)") from None
    sections: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise UsageError(
                f"{origin}: {mask_credentials(name)}: a setting outside any [section] "
                "(put it under a table such as [EC2])"
            )
        for key, value in table.items():
            if isinstance(value, dict):
                raise UsageError(
                    f"{origin} [{name}] {mask_credentials(key)}: nested tables are not settings (use plain keys)"
                )
        sections[name] = dict(table)
    return sections
