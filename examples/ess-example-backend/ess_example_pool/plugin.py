"""Entry point module (``[project.entry-points.ess] pool = "ess_example_pool.plugin"``).

ess imports this at start-up, so it stays tiny: it only hands ess the backend object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ess import hookimpl

if TYPE_CHECKING:
    from ess.backend import Backend


@hookimpl
def ess_backends() -> list[Backend]:
    # Imported on demand: `ess --help` loads this module but never asks for backends.
    from .backend import PoolBackend

    return [PoolBackend()]
