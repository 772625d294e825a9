"""Entry point of the hosts backend; import-light (``ess --help`` loads it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ess import hookimpl

if TYPE_CHECKING:
    from ess.backend import Backend


@hookimpl
def ess_backends() -> list[Backend]:
    # Imported here, not at module level: `ess --help` loads this module but never
    # asks for backends, so it never pays for the backend's code.
    from .backend import HostsBackend

    return [HostsBackend()]
