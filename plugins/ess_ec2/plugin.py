"""ess plugin entry point for the EC2 backend (import-light: no boto3 here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ess

if TYPE_CHECKING:
    from ess.backend import Backend


@ess.hookimpl
def ess_backends() -> list[Backend]:
    """The EC2 backend."""
    # Imported here, not at module level: `ess --help` loads this module but never
    # asks for backends, so it never pays for the backend's code.
    from .backend import Ec2Backend

    return [Ec2Backend()]
