"""@pytest.mark.needs: a missing program skips a test here and fails it under ESS_INTEGRATION=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
INNER = """
import pytest

@pytest.mark.needs("ess-no-such-program")
def test_needs_a_missing_program():
    pass

@pytest.mark.needs("sh")
def test_needs_sh():
    pass
"""


@pytest.mark.parametrize(("integration", "outcome"), [("", "1 passed, 1 skipped"), ("1", "1 passed, 1 error")])
def test_a_missing_program_skips_a_test_and_fails_it_in_ci(
    pytester: pytest.Pytester, integration: str, outcome: str
) -> None:
    pytester.makeconftest((TESTS / "conftest.py").read_text())  # the hook under test, as ess's tests get it
    pytester.makepyfile(test_inner=INNER)
    env = {
        **os.environ,
        "ESS_INTEGRATION": integration,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("ESS_RELIABILITY_LOG", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            str(pytester.path),
        ],
        capture_output=True,
        text=True,
        cwd=pytester.path,
        timeout=120,
        env=env,
    )
    assert proc.stdout.strip().splitlines()[-1].startswith(outcome), proc.stdout
    expected = (
        "ESS_INTEGRATION=1 but ess-no-such-program not installed"
        if integration
        else "ess-no-such-program not installed (run tests/integration/setup.sh)"
    )
    assert expected in proc.stdout
