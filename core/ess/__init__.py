"""ess: a plugin-based, multi-backend cluster provisioner.

Kept import-light on purpose: `ess --help` must not pay for boto3 or paramiko.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .api import Cluster

__version__ = "0.1.0"

#: Marker for plugin implementations: ``@hookimpl def ess_backends(): ...``
hookimpl = pluggy.HookimplMarker("ess")

__all__ = ["Cluster", "__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    """``ess.Cluster`` (the Python API, docs/api.md), imported on first use so that
    ``import ess`` and ``ess --help`` do not pay for it."""
    if name == "Cluster":
        from .api import Cluster

        return Cluster
    raise AttributeError(f"module 'ess' has no attribute {name!r}")
