"""The tree stays linted, formatted and type-checked: CI runs these through the README's test command.

ruff and mypy come with the ``test`` extra; their settings live in pyproject.toml. A failure
prints the tool's own report, so the fix is one command away (``ruff format .``,
``ruff check --fix .``, ``mypy``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "argv", [("ruff", "check", "."), ("ruff", "format", "--check", ".")], ids=["ruff-check", "ruff-format"]
)
def test_ruff_is_clean(argv: tuple[str, ...]) -> None:
    done = _run(*argv)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean_on_core_and_plugins() -> None:
    done = _run("mypy")  # files, paths and strictness: [tool.mypy] in pyproject.toml
    assert done.returncode == 0, done.stdout + done.stderr
