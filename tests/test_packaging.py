"""Packaging habits that a refactor could silently drop: type hints shipped, licence declared."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = ["core/ess", "plugins/ess_ec2", "plugins/ess_ssh", "plugins/ess_local", "plugins/ess_hosts"]


def test_every_package_ships_py_typed() -> None:
    missing = [package for package in PACKAGES if not (ROOT / package / "py.typed").is_file()]
    assert missing == []
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["*"]


def test_licence_is_an_spdx_string_with_the_mit_text_and_a_backend_that_reads_it() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    requires = " ".join(PYPROJECT["build-system"]["requires"])
    floor = re.search(r"setuptools>=(\d+)", requires)
    assert floor and int(floor.group(1)) >= 77, "SPDX license strings need setuptools >= 77"


def test_directly_imported_third_party_modules_are_declared() -> None:
    declared = " ".join(PYPROJECT["project"]["dependencies"])
    imported = {"cryptography", "boto3", "paramiko", "asyncssh", "pluggy", "click", "platformdirs", "filelock"}
    for name in sorted(imported):
        assert re.search(rf"\b{name}\b", declared), f"{name} is imported by ess but not a dependency"
        used = [path for path in (ROOT / "core").rglob("*.py")] + [path for path in (ROOT / "plugins").rglob("*.py")]
        assert any(re.search(rf"^\s*(import|from) {name}\b", path.read_text(), re.M) for path in used), name


def test_changelog_names_the_current_hook_api() -> None:
    from ess.hookspecs import ESS_HOOK_API

    assert f"Hook API **{ESS_HOOK_API}**" in (ROOT / "CHANGELOG.md").read_text()
