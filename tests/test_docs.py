"""Docs that cannot drift: every hook in the author guide, the config reference regenerated."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ess import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [(name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("ess_")]


def section(text: str, hook: str) -> str:
    match = re.search(rf"^### `{hook}`\n(.*?)(?=^### |^## |\Z)", text, re.S | re.M)
    assert match, f"docs/plugins.md has no section for {hook}"
    return match.group(1)


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[n for n, _ in HOOKS])
def test_every_hook_is_documented_with_its_arguments(name, fn):
    body = section((ROOT / "docs" / "plugins.md").read_text(), name)
    for argument in inspect.signature(fn).parameters:
        assert f"{argument}:" in body, f"{name}: argument {argument!r} is not documented"
    firstresult = fn.ess_spec.get("firstresult", False)
    assert ("first result wins" in body.lower()) == firstresult, f"{name}: firstresult semantics"
    assert fn.__doc__ and len(fn.__doc__.strip()) > 80, f"{name}: hookspec docstring too thin"


def test_guide_documents_no_hook_that_does_not_exist():
    documented = set(re.findall(r"^### `(ess_\w+)`", (ROOT / "docs" / "plugins.md").read_text(), re.M))
    assert documented == {name for name, _ in HOOKS}


def test_config_reference_is_current():
    from ess.reference import config_reference

    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == config_reference(), "regenerate: python -m ess.reference config > docs/config.md"


def test_config_reference_does_not_depend_on_who_generates_it():
    """It once gave the local backend's username default as `root`: the login name of
    whoever ran the generator, not what another user gets."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LOGNAME": "alice", "USER": "alice", "LNAME": "alice", "USERNAME": "alice"}
    generated = subprocess.run(
        [sys.executable, "-m", "ess.reference", "config"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert generated == (ROOT / "docs" / "config.md").read_text()
    assert "your login name" in generated
