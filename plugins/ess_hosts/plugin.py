"""Entry point of the hosts backend; import-light (``ess --help`` loads it)."""

from __future__ import annotations

from ess import hookimpl
from ess.backend import Backend

from .backend import HostsBackend


@hookimpl
def ess_backends() -> list[Backend]:
    return [HostsBackend()]
