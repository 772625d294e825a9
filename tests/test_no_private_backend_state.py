"""No test reads a private attribute of a backend, its AWS client module or its session.

Tests that read ``backend._plans`` or ``_seen_recently`` pin the implementation and let
per-command state hide on long-lived objects (issue #14). Tests assert public behaviour
instead: results, and API calls counted at the client seam or the moto server.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: Expressions that hold a backend, an EC2 client module or an EC2 session.
BACKEND_LIKE = re.compile(r"(backend|ec2_client|aws_client|client_module|session)\b", re.IGNORECASE)
#: Calls whose result is a backend object.
MAKES_BACKEND = re.compile(r"(Backend\(|backends\(\)|backend_named\(|\.backend\b)")


def private_reads(source: str) -> list[tuple[int, str]]:
    """``(line, expression)`` for each ``x._name`` where ``x`` is a backend-like object."""
    tree = ast.parse(source)
    # Names bound to a backend somewhere in the module (``other = Ec2Backend()``).
    bound = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and MAKES_BACKEND.search(ast.unparse(node.value))
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        owner = ast.unparse(node.value)
        if owner == "self":  # a test's own helper class (a backend written in the test)
            continue
        if BACKEND_LIKE.search(owner) or owner in bound:
            found.append((node.lineno, f"{owner}.{name}"))
    return sorted(found)


def test_the_scan_finds_the_reads_it_forbids() -> None:
    source = (
        "world.backend._plans[request.launch_id]\n"
        "other = Ec2Backend()\nother._seen_recently(ids)\n"
        "ec2_client._last_connect\n"
        "ctx._protected_args\nself._serve\nbackend.__class__\n"
    )
    assert [expr for _, expr in private_reads(source)] == [
        "world.backend._plans",
        "other._seen_recently",
        "ec2_client._last_connect",
    ]


def test_no_test_reads_private_backend_state() -> None:
    # ess's own tests and the example backend's, which third-party authors copy.
    files = [*TESTS.rglob("*.py"), *TESTS.parent.glob("examples/*/tests/*.py")]
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}: {expr}"
        for path in sorted(files)
        for line, expr in private_reads(path.read_text(encoding="utf-8"))
    ]
    assert len(files) > 50, "the scan found too few test files to mean anything"
    assert offenders == [], "read public behaviour instead:\n" + "\n".join(offenders)
