"""A remote-execution plugin for tests (``ESS_PLUGINS=support.fake_runner``): it records each
command and the nodes it was asked to run on, and answers exit 0, or :data:`FAIL_ON`'s ids
with an error, without connecting anywhere (moto's instances have made-up addresses)."""

from __future__ import annotations

from ess import hookimpl
from ess.models import Access, CommandResult, Node, Settings

#: (command, node ids) per call, in order.
CALLS: list[tuple[str, list[str]]] = []
#: Node ids whose command "fails" (as an unreachable node would).
FAIL_ON: set[str] = set()


@hookimpl
def ess_run_command(nodes: list[Node], command: str, access: Access, settings: Settings) -> list[CommandResult]:
    CALLS.append((command, [n.id for n in nodes]))
    return [
        CommandResult(n.id, None, error="connection refused") if n.id in FAIL_ON else CommandResult(n.id, 0)
        for n in nodes
    ]
