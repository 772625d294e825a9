"""Results on stdout: aligned tables for people, JSON (stable keys) for scripts.

Used by the command line (:mod:`ess.cli`) and by plugins' commands through
:class:`Output`; the Python API (:mod:`ess.api`) returns models and prints nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .census import Census
from .lifetime import time_left
from .models import CheckResult, Node
from .redact import scrub


def emit(text: str) -> None:
    sys.stdout.write(scrub(text) + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()


def emit_json(data: Any) -> None:
    emit(json.dumps(data, indent=2, sort_keys=False, default=str))


@dataclass(frozen=True)
class Output:
    """How one command presents its result: ``json`` says whether --json was given.

    Results go to stdout (:meth:`emit`, :meth:`emit_json`), notes and warnings to stderr
    (:meth:`note`), so ``ess ... --json | jq`` sees only the result.
    """

    json: bool = False

    def emit(self, text: str) -> None:
        emit(text)

    def emit_json(self, data: Any) -> None:
        emit_json(data)

    def table(self, rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
        emit(table(rows, headers))

    def note(self, text: str) -> None:
        """One line on stderr (secrets masked): progress, notes, ``ess: warning: ...``."""
        sys.stderr.write(scrub(text) + "\n")
        sys.stderr.flush()


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def state_cell(node: Node) -> str:
    """A node's state for a table; a lost node says so, with the backend's reason."""
    if not node.lost:
        return node.state
    return f"{node.state} (lost: {node.reason})" if node.reason else f"{node.state} (lost)"


def check_summary(node: Node, checks: Iterable[CheckResult]) -> tuple[str, float | None]:
    """One node's verdict over every checker: "ok", or the first failure's reason."""
    mine = [c for c in checks if c.node_id == node.id]
    if not mine:
        return "-", None
    failed = [c for c in mine if not c.ok]
    seconds = max(c.seconds for c in mine)
    return ("ok" if not failed else f"FAILED: {failed[0].message}"), seconds


def placement_headers(nodes: Sequence[Node]) -> list[str]:
    """``zone`` and ``lifecycle`` columns, each only when some node has a value for it (EC2
    has both; local has neither, and gets no column of dashes)."""
    return [h for h in ("zone", "lifecycle") if any(getattr(n, h) for n in nodes)]


def checks_by_node(checks: Iterable[CheckResult]) -> dict[str, list[CheckResult]]:
    """Each node's check results: looked up per row, not scanned (O(N^2) at 1,000 nodes)."""
    found: dict[str, list[CheckResult]] = {}
    for check in checks:
        found.setdefault(check.node_id, []).append(check)
    return found


def nodes_table(nodes: Sequence[Node], checks: Sequence[CheckResult] | None = None) -> str:
    placement = placement_headers(nodes)
    mine = checks_by_node(checks or ())
    headers = ["id", "state", "address", "type", *placement, "launched"]
    rows: list[list[Any]] = []
    for n in nodes:
        address = f"{n.address}:{n.port}" if n.address and n.port != 22 else n.address
        launched = n.launched_at.strftime("%Y-%m-%d %H:%M") if n.launched_at else None
        row: list[Any] = [n.id, state_cell(n), address, n.instance_type, *(getattr(n, h) for h in placement), launched]
        if checks is not None:
            verdict, seconds = check_summary(n, mine.get(n.id, ()))
            row += [verdict, seconds]
        rows.append(row)
    if checks is not None:
        headers += ["verified", "seconds"]
    return table(rows, headers)


def nodes_json(
    backend: str, cluster: str, nodes: Sequence[Node], checks: Sequence[CheckResult] | None = None, **extra: Any
) -> dict[str, Any]:
    items = []
    mine = checks_by_node(checks or ())
    for n in nodes:
        item = n.to_dict()
        if checks is not None:
            item["checks"] = [c.to_dict() for c in mine.get(n.id, ())]
        items.append(item)
    return {"backend": backend, "cluster": cluster, "nodes": items, **extra}


def uptime(node: Node, now: datetime | None = None) -> str | None:
    if node.launched_at is None or node.state != "running":
        return None
    launched = node.launched_at if node.launched_at.tzinfo else node.launched_at.replace(tzinfo=timezone.utc)
    seconds = int(((now or datetime.now(timezone.utc)) - launched).total_seconds())
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    return (f"{days}d " if days else "") + f"{hours}h{rest // 60:02d}m"


def status_table(nodes: Sequence[Node], checks: Sequence[CheckResult] | None = None) -> str:
    """Per node, then one summary line against the intended size: ``3/5 running (2 lost)``."""
    placement = placement_headers(nodes)
    # When any node has a deadline (--ttl), how long it has left (issue 16).
    expiry = ["expires in"] if any(n.expires for n in nodes) else []
    headers = ["id", "state", "public_ip", "private_ip", "type", *placement, "uptime", *expiry]
    mine = checks_by_node(checks or ())
    rows: list[list[Any]] = []
    for n in nodes:
        row: list[Any] = [n.id, state_cell(n), n.public_ip, n.private_ip, n.instance_type]
        row += [*(getattr(n, h) for h in placement), uptime(n), *(time_left(n) for _ in expiry)]
        if checks is not None:
            row.append(check_summary(n, mine.get(n.id, ()))[0])
        rows.append(row)
    return table(rows, headers + (["ssh"] if checks is not None else [])) + "\n" + Census.of(nodes).summary()


def status_json(
    backend: str, cluster: str, nodes: Sequence[Node], checks: Sequence[CheckResult] | None = None
) -> dict[str, Any]:
    """:func:`nodes_json` with each node's uptime, and the counts of :meth:`Census.to_dict`
    (``intended``, ``running``, ``pending``, ``stopped``, ``lost``, ``expired``, ``missing``)."""
    data = nodes_json(backend, cluster, nodes, checks, **Census.of(nodes).to_dict())
    for item, node in zip(data["nodes"], nodes, strict=True):
        item["uptime"] = uptime(node)
        item["expires_in"] = time_left(node)
    return data
