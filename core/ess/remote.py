"""``exec`` and ``push``: a command or files on every node, through the remote-execution hooks.

The core picks the nodes, asks the plugin that implements ``ess_run_command`` /
``ess_push_files`` (ess's SSH plugin), and owns the output: each line prefixed by its node
as it arrives (:mod:`ess.prefixed`), or JSON with per-node exit code and the tail of stdout
and stderr. A lost node (``Node.lost``) is a failed result, never silently left out.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .backend import Backend
from .cli import EXIT_CODES_HELP, OPTIONS, common_options
from .commands import load, progress, setting_options
from .errors import EssError, PartialFailure, UsageError
from .models import CommandResult, Node, Settings
from .output import emit, emit_json, table
from .plugins import get_plugin_manager
from .prefixed import STREAMS, PrefixedLines
from .progress import Progress
from .provision import health_targets, lost_message


def running_nodes(backend: Backend, settings: Settings) -> list[Node]:
    """The cluster's running nodes (lost ones left out: :func:`run_command` reports them)."""
    return [n for n in health_targets(backend, settings) if not n.lost]


def lost_results(nodes: list[Node]) -> list[CommandResult]:
    """A failed result per lost node: named, with its state and the backend's reason."""
    return [CommandResult(n.id, None, error=lost_message(n)) for n in nodes if n.lost]


def _with_lost(targets: list[Node], results: list[CommandResult]) -> list[CommandResult]:
    by_id = {r.node_id: r for r in [*results, *lost_results(targets)]}
    return [by_id[n.id] for n in targets if n.id in by_id]


def run_command(backend: Backend, settings: Settings, command: str, progress: Progress,
                output: Callable[[str, str, bytes], None] | None = None,
                targets: list[Node] | None = None) -> list[CommandResult]:
    """``command`` on every running node (streamed to ``output``), lost nodes as failures.

    ``targets``: the nodes from :func:`ess.provision.health_targets`, if already listed.
    """
    targets = health_targets(backend, settings) if targets is None else targets
    running = [n for n in targets if not n.lost]
    results: list[CommandResult] = []
    if running:
        answer = get_plugin_manager().hook.ess_run_command(
            nodes=running, command=command, access=backend.access(settings), settings=settings,
            progress=progress, output=output)
        if answer is None:
            raise no_runner("exec")
        results = list(answer)
    return _with_lost(targets, results)


def push_files(backend: Backend, settings: Settings, source: Path, destination: str,
               progress: Progress) -> list[CommandResult]:
    """Copy ``source`` to every running node; lost nodes as failures."""
    targets = health_targets(backend, settings)
    running = [n for n in targets if not n.lost]
    results: list[CommandResult] = []
    if running:
        answer = get_plugin_manager().hook.ess_push_files(
            nodes=running, source=source, destination=destination, access=backend.access(settings),
            settings=settings, progress=progress)
        if answer is None:
            raise no_runner("push")
        results = list(answer)
    return _with_lost(targets, results)


def no_runner(hook: str) -> UsageError:
    return UsageError(f"{hook}: no installed plugin runs commands on nodes "
                      "(ess's ssh plugin does: check `ess plugins`)")


def verdict(results: list[CommandResult], what: str) -> None:
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    names = ", ".join(f"{r.node_id} ({r.error or f'exit {r.exit_code}'})" for r in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    message = f"{what} failed on {len(failed)} of {len(results)} node(s): {names}{more}"
    raise (PartialFailure if len(failed) < len(results) else EssError)(message)


def print_prefixed(results: list[CommandResult], lines: PrefixedLines | None = None) -> None:
    """End each node's output as ``<node> | line`` (stdout to stdout, stderr to stderr).

    What ``lines`` already streamed is not printed again: only the output of a runner that
    did not stream, the unfinished last lines, and why a node failed.
    """
    lines = lines or PrefixedLines(r.node_id for r in results)
    for result in results:
        for stream in STREAMS:
            if (result.node_id, stream) not in lines.streamed:
                lines.text(result.node_id, stream, getattr(result, stream))
        lines.flush(result.node_id)
        if result.error:
            lines.note(result.node_id, result.error)
        elif result.exit_code:
            lines.note(result.node_id, f"exit code {result.exit_code}")


def exec_command(backend: Backend) -> click.Command:
    @click.command("exec", epilog=EXIT_CODES_HELP, help=f"""Run a command on every running node in parallel, over SSH.

    Put the command after `--`. Each output line is prefixed by its node; the exit code is
    0 only if the command succeeded everywhere (3 if only some nodes failed).

    \b
    Examples:
      ess instance {backend.name} exec -- uptime
      ess instance {backend.name} exec --json -- 'df -h / | tail -1'
    """)
    @click.argument("command", nargs=-1, required=True, metavar="-- COMMAND...")
    @setting_options(backend, "exec")
    @common_options
    def exec_(command: tuple[str, ...], **flags: Any) -> None:
        settings = load(backend, flags)
        line = command[0] if len(command) == 1 else shlex.join(command)
        # Lines go out as they arrive (no --json); the results hold only each stream's tail.
        targets = health_targets(backend, settings)
        lines = None if OPTIONS.json else PrefixedLines(n.id for n in targets)
        stage = progress()
        if lines is not None and stage.tty:
            # A redrawn progress line would run into the streamed lines on the terminal.
            stage = Progress(quiet=True)
        results = run_command(backend, settings, line, stage, output=lines, targets=targets)
        if OPTIONS.json:
            emit_json({"backend": backend.name, "cluster": settings.cluster, "command": line,
                       "results": [r.to_dict() for r in results]})
        else:
            print_prefixed(results, lines)
        verdict(results, "command")
    return exec_


def push_command(backend: Backend) -> click.Command:
    @click.command("push", epilog=EXIT_CODES_HELP, help=f"""Copy a file or folder to every running node over SFTP.

    \b
    Examples:
      ess instance {backend.name} push ./job.py
      ess instance {backend.name} push ./data --dest /tmp/inputs
    """)
    @click.argument("source", metavar="SRC")
    @click.option("--dest", default=".", metavar="DIR", show_default=True,
                  help="Folder on each node to copy into (created if missing; relative to the home folder).")
    @setting_options(backend, "push")
    @common_options
    def push(source: str, dest: str, **flags: Any) -> None:
        path = Path(source).expanduser()
        if not path.exists():
            raise UsageError(f"push {source}: no such file or folder (check the path)")
        if not (path.is_file() or path.is_dir()):
            raise UsageError(f"push {source}: not a regular file or folder")
        settings = load(backend, flags)
        results = push_files(backend, settings, path, dest, progress())
        if OPTIONS.json:
            emit_json({"backend": backend.name, "cluster": settings.cluster, "source": str(path),
                       "destination": dest, "results": [r.to_dict() for r in results]})
        else:
            emit(table([(r.node_id, "ok" if r.ok else f"FAILED: {r.error or r.stderr.strip()}", r.seconds)
                        for r in results], ["node", "result", "seconds"]))
        verdict(results, "push")
    return push
