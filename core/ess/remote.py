"""``exec`` and ``push``: a command or files on every node, through the remote-execution hooks.

The core picks the nodes, asks the plugin that implements ``ess_run_command`` /
``ess_push_files`` (ess's SSH plugin), and owns the output: each line prefixed by its node,
or JSON with per-node stdout, stderr and exit code.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from .backend import Backend
from .cli import EXIT_CODES_HELP, OPTIONS, common_options
from .commands import load, progress, setting_options
from .errors import EssError, PartialFailure, UsageError
from .models import RUNNING, CommandResult, Node, Settings
from .output import emit, emit_json, table
from .plugins import get_plugin_manager


def running_nodes(backend: Backend, settings: Settings) -> list[Node]:
    nodes = [n for n in backend.list(settings) if n.state == RUNNING]
    if not nodes:
        raise EssError(f"cluster {settings.cluster!r} has no running nodes "
                       f"(start some with: ess instance {backend.name} create)")
    return nodes


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


def print_prefixed(results: list[CommandResult]) -> None:
    """Each node's output as ``<node> | line``: stdout to stdout, stderr to stderr."""
    width = max(len(r.node_id) for r in results)
    for result in results:
        label = result.node_id.ljust(width)
        for line in result.stdout.splitlines():
            emit(f"{label} | {line}")
        for line in result.stderr.splitlines():
            sys.stderr.write(f"{label} | {line}\n")
        if result.error:
            sys.stderr.write(f"{label} | ess: {result.error}\n")
        elif result.exit_code:
            sys.stderr.write(f"{label} | ess: exit code {result.exit_code}\n")


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
        nodes = running_nodes(backend, settings)
        results = get_plugin_manager().hook.ess_run_command(
            nodes=nodes, command=line, access=backend.access(settings), settings=settings, progress=progress())
        if results is None:
            raise no_runner("exec")
        if OPTIONS.json:
            emit_json({"backend": backend.name, "cluster": settings.cluster, "command": line,
                       "results": [r.to_dict() for r in results]})
        else:
            print_prefixed(results)
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
        nodes = running_nodes(backend, settings)
        results = get_plugin_manager().hook.ess_push_files(
            nodes=nodes, source=path, destination=dest, access=backend.access(settings), settings=settings,
            progress=progress())
        if results is None:
            raise no_runner("push")
        if OPTIONS.json:
            emit_json({"backend": backend.name, "cluster": settings.cluster, "source": str(path),
                       "destination": dest, "results": [r.to_dict() for r in results]})
        else:
            emit(table([(r.node_id, "ok" if r.ok else f"FAILED: {r.error or r.stderr.strip()}", r.seconds)
                        for r in results], ["node", "result", "seconds"]))
        verdict(results, "push")
    return push
