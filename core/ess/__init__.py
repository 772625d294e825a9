"""ess: a plugin-based, multi-backend cluster provisioner.

Kept import-light on purpose: `ess --help` must not pay for boto3 or paramiko.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for plugin implementations: ``@hookimpl def ess_backends(): ...``
hookimpl = pluggy.HookimplMarker("ess")

__all__ = ["__version__", "hookimpl"]
