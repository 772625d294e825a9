"""The local backend plugin: nodes that are SSH server processes on this machine.

Import-light on purpose: asyncssh is imported only by the node processes themselves.
"""

from __future__ import annotations

import ess
from ess.backend import Backend

from .backend import LocalBackend


@ess.hookimpl
def ess_backends() -> list[Backend]:
    """The ``local`` backend."""
    return [LocalBackend()]
