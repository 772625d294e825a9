"""Packaging habits that a refactor could silently drop: type hints shipped, licence declared."""

from __future__ import annotations

import ast
import importlib.metadata
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


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level modules imported anywhere under ``folder`` that are neither stdlib nor ess's own."""
    first_party = {"ess", "ess_ec2", "ess_ssh", "ess_local", "ess_hosts"}
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in first_party:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def is_testing_module(path: str) -> bool:
    return path.startswith("core/ess/testing/") or (path.startswith("plugins/") and path.endswith("/testing.py"))


def test_every_third_party_module_ess_imports_is_declared() -> None:
    """Imported directly = declared directly (cryptography, botocore): a transitive
    dependency can vanish when the package that brought it changes its own."""
    runtime = requirement_names(PYPROJECT["project"]["dependencies"])
    testing = runtime | requirement_names(PYPROJECT["project"]["optional-dependencies"]["test"])
    modules_to_dists = importlib.metadata.packages_distributions()
    undeclared = []
    for folder in [ROOT / "core", ROOT / "plugins"]:
        for module, files in sorted(third_party_imports(folder).items()):
            dists = {d.lower().replace("_", "-") for d in modules_to_dists.get(module, [module])}
            # ess.testing and a plugin's testing.py are opt-in pytest plugins: they may use what
            # the test extra installs (pytest, moto).
            allowed = testing if all(is_testing_module(f) for f in files) else runtime
            if not dists & allowed:
                undeclared.append(f"{module} ({sorted(files)[0]})")
    assert undeclared == []


def test_the_pytest_plugin_is_opt_in() -> None:
    """Installing ess must not load ess into other projects' pytest runs (docs/plugins.md)."""
    assert "pytest11" not in PYPROJECT["project"].get("entry-points", {})
    assert all(
        ep.value.split(".")[0] not in {"ess", "ess_ec2"} for ep in importlib.metadata.entry_points(group="pytest11")
    )


def test_changelog_names_the_current_hook_api() -> None:
    from ess.hookspecs import ESS_HOOK_API

    assert f"Hook API **{ESS_HOOK_API}**" in (ROOT / "CHANGELOG.md").read_text()
