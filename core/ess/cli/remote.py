"""``exec``, ``push``, ``ssh`` and ``ssh-config`` under ``ess instance <backend>``.

The work is elsewhere: ``push`` calls :meth:`ess.Cluster.push`; ``exec`` calls the flow
:func:`ess.remote.run_command` itself, because it lists the target nodes once, to size the
prefixes before the first line streams, and hands them on; ``ssh`` and ``ssh-config`` use
:mod:`ess.login`. This module parses and presents: each output line prefixed by its node
as it arrives (:mod:`ess.prefixed`), or JSON with per-node exit code and the tail of stdout
and stderr.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..backend import Backend
from ..errors import Interrupted, UsageError
from ..hints import empty_cluster
from ..login import config_entries, config_text, openssh_argv, pick_node
from ..models import CommandResult
from ..output import emit, emit_json, table
from ..prefixed import STREAMS, PrefixedLines
from ..progress import Progress
from ..provision import health_targets, sigterm_as_interrupt
from ..remote import run_command, verdict
from .options import EXIT_CODES_HELP, common_options, invocation, progress, setting_options
from .options import load_settings as load


@contextmanager
def interrupts_say(message: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM inside ends the command with ``message`` (exit 130).

    For commands that reach the nodes without changing the cluster (exec, push, verify):
    SIGTERM is a Ctrl-C here as in the node-changing flows, and the line says what an
    interruption may have left behind, which only the command knows.
    """
    try:
        with sigterm_as_interrupt():
            yield
    except KeyboardInterrupt:
        raise Interrupted(message) from None


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
    @click.command(
        "exec",
        epilog=EXIT_CODES_HELP,
        help=f"""Run a command on every running node in parallel, over SSH.

    Put the command after `--`. Each output line is prefixed by its node; the exit code is
    0 only if the command succeeded everywhere (3 if only some nodes failed).

    \b
    Examples:
      ess instance {backend.name} exec -- uptime
      ess instance {backend.name} exec --json -- 'df -h / | tail -1'
    """,
    )
    @click.argument("command", nargs=-1, required=True, metavar="-- COMMAND...")
    @setting_options(backend, "exec")
    @common_options
    def exec_(command: tuple[str, ...], **flags: Any) -> None:
        settings = load(backend, flags)
        line = command[0] if len(command) == 1 else shlex.join(command)
        # Lines go out as they arrive (no --json); the results hold only each stream's tail.
        targets = health_targets(backend, settings)
        lines = None if invocation().json else PrefixedLines(n.id for n in targets)
        stage = progress()
        if lines is not None and stage.tty:
            # A redrawn progress line would run into the streamed lines on the terminal.
            stage = Progress(quiet=True)
        with interrupts_say("interrupted; the command may still be running on the nodes"):
            results = run_command(backend, settings, line, stage, output=lines, targets=targets)
        if invocation().json:
            emit_json(
                {
                    "backend": backend.name,
                    "cluster": settings.cluster,
                    "command": line,
                    "results": [r.to_dict() for r in results],
                }
            )
        else:
            print_prefixed(results, lines)
        verdict(results, "command")

    return exec_


def push_command(backend: Backend) -> click.Command:
    @click.command(
        "push",
        epilog=EXIT_CODES_HELP,
        help=f"""Copy a file or folder to every running node over SFTP.

    \b
    Examples:
      ess instance {backend.name} push ./job.py
      ess instance {backend.name} push ./data --dest /tmp/inputs
    """,
    )
    @click.argument("source", metavar="SRC")
    @click.option(
        "--dest",
        default=".",
        metavar="DIR",
        show_default=True,
        help="Folder on each node to copy into (created if missing; relative to the home folder).",
    )
    @setting_options(backend, "push")
    @common_options
    def push(source: str, dest: str, **flags: Any) -> None:
        from ..api import Cluster

        settings = load(backend, flags)
        with interrupts_say("interrupted; partial copies may be left on the nodes"):
            results = Cluster.from_settings(settings, progress=progress()).push(source, dest)
        path = Path(source).expanduser()  # the API checked it: a file or a folder
        if invocation().json:
            emit_json(
                {
                    "backend": backend.name,
                    "cluster": settings.cluster,
                    "source": str(path),
                    "destination": dest,
                    "results": [r.to_dict() for r in results],
                }
            )
        else:
            emit(
                table(
                    [
                        (r.node_id, "ok" if r.ok else f"FAILED: {r.error or r.stderr.strip()}", r.seconds)
                        for r in results
                    ],
                    ["node", "result", "seconds"],
                )
            )
        verdict(results, "push")

    return push


def ssh_config_command(backend: Backend) -> click.Command:
    name = backend.name

    @click.command(
        "ssh-config",
        help=f"""Print an OpenSSH config snippet: one Host per node, named by its id.

    Each entry carries HostName, Port, User, IdentityFile and the cluster's known_hosts
    with StrictHostKeyChecking yes, so plain ssh, scp and rsync reach a node by id.
    A node whose host key is not known yet is refused by ssh: run verify first.

    \\b
    Examples:
      ess instance {name} ssh-config >> ~/.ssh/config
      ess instance {name} ssh-config > nodes.ssh && ssh -F nodes.ssh {backend.example_node_id} uptime
    """,
    )
    @setting_options(backend, "ssh-config")
    @common_options
    def ssh_config(**flags: Any) -> None:
        settings = load(backend, flags)
        nodes = backend.nodes(settings)
        entries = config_entries(backend.access(settings), nodes)
        if invocation().json:
            emit_json({"backend": name, "cluster": settings.cluster, "hosts": entries})
        elif entries:
            emit(config_text(entries))
        else:
            click.echo(empty_cluster(backend, settings.cluster), err=True)

    return ssh_config


class PassthroughCommand(click.Command):
    """Keeps everything after ``--`` out of click's parsing, for the remote command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["ess.remote_command"] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


def ssh_command(backend: Backend) -> click.Command:
    name = backend.name

    @click.command(
        "ssh",
        cls=PassthroughCommand,
        epilog=EXIT_CODES_HELP,
        help=f"""Log in to a node with OpenSSH (default: the first running node of `list`).

    Uses the cluster's user, key and known_hosts, host key checked. A command after `--`
    runs on the node instead of a login shell; the exit code is the command's (255: ssh
    itself failed).

    \\b
    Examples:
      ess instance {name} ssh
      ess instance {name} ssh {backend.example_node_id} -- uptime
    """,
    )
    @click.argument("node", required=False, metavar="[NODE]")
    @setting_options(backend, "ssh")
    @common_options
    def ssh(node: str | None, **flags: Any) -> None:
        ctx = click.get_current_context()
        remote = list(ctx.meta.get("ess.remote_command", []))
        settings = load(backend, flags)
        target = pick_node(backend, settings, node)
        access = backend.access(settings)
        program = shutil.which("ssh")
        if program is None:
            raise UsageError(
                "ssh: the OpenSSH client is not installed (install openssh-client, "
                f"or use `ess instance {name} exec -- CMD`)"
            )
        argv = openssh_argv(access, target) + (["--", *remote] if remote else [])
        sys.stdout.flush()
        sys.stderr.flush()
        # Replace this process, as `flintrock login` does: the terminal belongs to ssh now.
        os.execv(program, argv)

    return ssh
