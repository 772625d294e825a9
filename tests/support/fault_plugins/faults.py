"""Faults at the hooks of ``create``, switched on by environment variables (so they reach subprocesses).

Load with ``ESS_PLUGINS=support.fault_plugins.faults`` (the tests folder on PYTHONPATH). Every hook
is a no-op unless its variable is set:

- ``ESS_FAULT_AFTER_CREATE=raise``: ``ess_after_create`` raises RuntimeError.
- ``ESS_FAULT_AFTER_CREATE=sleep``: ``ess_after_create`` sleeps (up to ESS_FAULT_SLEEP
  seconds, default 120) so a test can signal a process that has launched its nodes.
- ``ESS_FAULT_READY=<path>``: written (node ids, one a line) when ``ess_after_create`` starts.
- ``ESS_FAULT_CHECK_FAIL=<k>``: ``ess_check_nodes`` fails the first k nodes (by id) and
  passes the rest, standing in for the SSH check.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ess import hookimpl
from ess.models import Access, CheckResult, Node, Settings
from ess.progress import Progress


@hookimpl
def ess_after_create(settings: Settings, nodes: list[Node]) -> None:
    ready = os.environ.get("ESS_FAULT_READY")
    if ready:
        Path(ready).write_text("".join(f"{n.id}\n" for n in nodes))
    mode = os.environ.get("ESS_FAULT_AFTER_CREATE", "")
    if mode == "raise":
        raise RuntimeError("fault plugin: after-create hook failed on purpose")
    if mode == "sleep":
        deadline = time.monotonic() + float(os.environ.get("ESS_FAULT_SLEEP", "120"))
        while time.monotonic() < deadline:  # short sleeps: a signal is handled at once
            time.sleep(0.05)


@hookimpl
def ess_check_nodes(
    nodes: list[Node], access: Access, settings: Settings, progress: Progress
) -> list[CheckResult] | None:
    failing = os.environ.get("ESS_FAULT_CHECK_FAIL")
    if failing is None:
        return None
    bad = {n.id for n in sorted(nodes, key=lambda n: n.id)[: int(failing)]}
    return [
        CheckResult(
            node_id=n.id,
            check="fault",
            ok=n.id not in bad,
            message="fault plugin: check failed on purpose" if n.id in bad else "",
        )
        for n in nodes
    ]
