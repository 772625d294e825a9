"""The local backend plugin: nodes that are SSH server processes on this machine.

Import-light on purpose: asyncssh is imported only by the node processes themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ess

if TYPE_CHECKING:
    from ess.backend import Backend


@ess.hookimpl
def ess_backends() -> list[Backend]:
    """The ``local`` backend."""
    # Imported here, not at module level: `ess --help` loads this module but never
    # asks for backends, so it never pays for the backend's code.
    from .backend import LocalBackend

    return [LocalBackend()]
