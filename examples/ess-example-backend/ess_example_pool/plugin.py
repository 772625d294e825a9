"""Entry point module (``[project.entry-points.ess] pool = "ess_example_pool.plugin"``).

ess imports this at start-up, so it stays tiny: it only hands ess the backend object.
"""

from __future__ import annotations

from ess import hookimpl
from ess.backend import Backend

from .backend import PoolBackend


@hookimpl
def ess_backends() -> list[Backend]:
    return [PoolBackend()]
