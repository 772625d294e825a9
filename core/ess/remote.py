"""The ``exec`` and ``push`` flows: a command or files on every node, through the remote-execution hooks.

The core picks the nodes and asks the plugin that implements ``ess_run_command`` /
``ess_push_files`` (ess's SSH plugin); a lost node (``Node.lost``) is a failed result,
never silently left out, and so is a node the answering plugin gave no result for
(:mod:`ess.plugins` holds every answer to one result per node it was asked about).
Presenting the results (prefixed lines, JSON) is the caller's: :mod:`ess.cli.remote` for
the command line, the program itself for :mod:`ess.api`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backend import Backend
from .errors import UsageError
from .models import CommandResult, Node, Settings
from .plugins import get_plugin_manager
from .progress import Progress
from .provision import health_targets, lost_message, reachable, verdict_error


def lost_results(nodes: list[Node]) -> list[CommandResult]:
    """A failed result per lost node: named, with its state and the backend's reason."""
    return [CommandResult(n.id, None, error=lost_message(n)) for n in nodes if n.lost]


def _with_lost(targets: list[Node], results: list[CommandResult]) -> list[CommandResult]:
    by_id = {r.node_id: r for r in [*results, *lost_results(targets)]}
    return [by_id[n.id] for n in targets if n.id in by_id]


def run_command(
    backend: Backend,
    settings: Settings,
    command: str,
    progress: Progress,
    output: Callable[[str, str, bytes], None] | None = None,
    targets: list[Node] | None = None,
) -> list[CommandResult]:
    """``command`` on every running node (streamed to ``output``), lost nodes as failures.

    ``targets``: the nodes from :func:`ess.provision.health_targets`, if already listed.
    """
    targets = health_targets(backend, settings) if targets is None else targets
    return _on_reachable(
        backend, settings, targets, "exec", "ess_run_command", command=command, progress=progress, output=output
    )


def push_files(
    backend: Backend, settings: Settings, source: Path, destination: str, progress: Progress
) -> list[CommandResult]:
    """Copy ``source`` to every running node; lost nodes as failures."""
    return _on_reachable(
        backend,
        settings,
        health_targets(backend, settings),
        "push",
        "ess_push_files",
        source=source,
        destination=destination,
        progress=progress,
    )


def _on_reachable(
    backend: Backend, settings: Settings, targets: list[Node], what: str, hook: str, **arguments: Any
) -> list[CommandResult]:
    """Call the first-result-wins ``hook`` with the reachable targets; lost ones as failures."""
    running = reachable(targets)
    results: list[CommandResult] = []
    if running:
        caller = getattr(get_plugin_manager().hook, hook)
        answer = caller(nodes=running, access=backend.access(settings), settings=settings, **arguments)
        if answer is None:
            raise no_runner(what)
        results = list(answer)
    return _with_lost(targets, results)


def no_runner(hook: str) -> UsageError:
    return UsageError(
        f"{hook}: no installed plugin runs commands on nodes (ess's ssh plugin does: check `ess plugins`)"
    )


def verdict(results: list[CommandResult], what: str) -> None:
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    names = ", ".join(f"{r.node_id} ({r.error or f'exit {r.exit_code}'})" for r in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    raise verdict_error(
        len(failed), len(results), f"{what} failed on {len(failed)} of {len(results)} node(s): {names}{more}"
    )
