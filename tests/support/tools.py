"""The one way a test says it needs a program from the machine (ssh, scp, setpriv, sshd, ...).

Without the program a developer's run skips the test, saying what to install. Under
``ESS_INTEGRATION=1`` (CI, after tests/integration/setup.sh) the same test FAILS instead:
CI must never lose a test silently because a tool went missing from its image.

Use the marker, which checks before any fixture starts a node::

    @pytest.mark.needs("ssh", "scp")
    def test_...(...):

or call :func:`require` where the need is only known inside a test or fixture.
"""

from __future__ import annotations

import os
import shutil

import pytest

SETUP = "tests/integration/setup.sh"


def in_ci() -> bool:
    """True under ESS_INTEGRATION=1, where every needed tool must be present."""
    return os.environ.get("ESS_INTEGRATION") == "1"


def missing(*tools: str) -> list[str]:
    """The tools (names on PATH, or absolute paths) that cannot be run here."""
    return [tool for tool in tools if shutil.which(tool) is None]


def require(*tools: str) -> None:
    """Skip (fail under ESS_INTEGRATION=1) unless every tool can be run."""
    absent = missing(*tools)
    if not absent:
        return
    what = f"{', '.join(absent)} not installed (run {SETUP})"
    if in_ci():
        pytest.fail(f"ESS_INTEGRATION=1 but {what}", pytrace=False)
    pytest.skip(what)
