"""ess plugin entry point for the EC2 backend (import-light: no boto3 here)."""

from __future__ import annotations

import ess
from ess.backend import Backend

from .backend import Ec2Backend


@ess.hookimpl
def ess_backends() -> list[Backend]:
    """The EC2 backend."""
    return [Ec2Backend()]
