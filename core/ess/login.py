"""``ssh`` and ``ssh-config``: log in to a node with OpenSSH, the cluster's key and known_hosts.

The core learns how to log in from :meth:`ess.backend.Backend.access` alone: the user,
the private key, and ``Access.known_hosts``, the file holding the nodes' host keys (the
local backend writes its own; otherwise the SSH plugin's per-cluster file,
:func:`ess.paths.known_hosts_file`). Host keys are always checked
(``StrictHostKeyChecking yes``): a node whose key is not in that file yet is refused,
never trusted blindly (``verify`` records the keys of cloud nodes).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from .backend import Backend
from .cli import EXIT_CODES_HELP, OPTIONS, common_options
from .commands import load, setting_options
from .errors import EssError, UsageError
from .models import RUNNING, Access, Node, Settings
from .output import emit, emit_json


def known_hosts_of(access: Access) -> Path:
    from .paths import known_hosts_file

    return access.known_hosts or known_hosts_file(access.backend, access.cluster)


def openssh_argv(access: Access, node: Node) -> list[str]:
    """The ``ssh`` command line that logs in to ``node``, its host key checked."""
    return ["ssh", "-i", str(access.key_file), "-p", str(node.port), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts_of(access)}", "-o", "StrictHostKeyChecking=yes",
            f"{access.username}@{node.address}"]


def login_hint(backend: Backend, settings: Settings, node: Node) -> str:
    """The line ``create`` prints under its table: OpenSSH by hand, or ``ess ... ssh``."""
    try:
        by_hand = shlex.join(openssh_argv(backend.access(settings), node))
    except EssError:
        by_hand = ""
    ours = f"ess instance {backend.name} ssh {node.id}"
    return f"log in by hand: {by_hand} (or: {ours})" if by_hand else f"log in: {ours}"


def _quoted(value: object) -> str:
    text = str(value)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def config_entries(access: Access, nodes: list[Node]) -> list[dict[str, Any]]:
    """One OpenSSH ``Host`` block per node that has an address, named by node id."""
    return [{"Host": n.id, "HostName": n.address, "Port": n.port, "User": access.username,
             "IdentityFile": str(access.key_file), "IdentitiesOnly": "yes",
             "UserKnownHostsFile": str(known_hosts_of(access)), "StrictHostKeyChecking": "yes"}
            for n in nodes if n.address and n.port]


def config_text(entries: list[dict[str, Any]]) -> str:
    blocks = []
    for entry in entries:
        lines = [f"Host {entry['Host']}"]
        lines += [f"  {key} {_quoted(value)}" for key, value in entry.items() if key != "Host"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def ssh_config_command(backend: Backend) -> click.Command:
    name = backend.name

    @click.command("ssh-config", help=f"""Print an OpenSSH config snippet: one Host per node, named by its id.

    Each entry carries HostName, Port, User, IdentityFile and the cluster's known_hosts
    with StrictHostKeyChecking yes, so plain ssh, scp and rsync reach a node by id.
    A node whose host key is not known yet is refused by ssh: run verify first.

    \\b
    Examples:
      ess instance {name} ssh-config >> ~/.ssh/config
      ssh -F <(ess instance {name} ssh-config) {backend.example_node_id} uptime
    """)
    @setting_options(backend, "ssh-config")
    @common_options
    def ssh_config(**flags: Any) -> None:
        settings = load(backend, flags)
        nodes = backend.nodes(settings)
        entries = config_entries(backend.access(settings), nodes)
        if OPTIONS.json:
            emit_json({"backend": name, "cluster": settings.cluster, "hosts": entries})
        elif entries:
            emit(config_text(entries))
        else:
            click.echo(f"cluster {settings.cluster!r} has no nodes on {name} "
                       f"(create some with: {_create_line(backend)})", err=True)
    return ssh_config


def _create_line(backend: Backend) -> str:
    from .commands import create_example

    return create_example(backend)


class PassthroughCommand(click.Command):
    """Keeps everything after ``--`` out of click's parsing, for the remote command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["ess.remote_command"] = args[at + 1:]
            args = args[:at]
        return super().parse_args(ctx, args)


def pick_node(backend: Backend, settings: Settings, wanted: str | None) -> Node:
    """The node ``ssh`` logs in to: the one named, else the first running row of ``list``."""
    nodes = backend.nodes(settings)
    if wanted is not None:
        found = [n for n in nodes if n.id == wanted]
        if not found:
            shown = ", ".join(n.id for n in nodes[:5]) or "none"
            raise UsageError(f"NODE: {wanted!r} is not a node of cluster {settings.cluster!r} "
                             f"(its nodes: {shown}; see `ess instance {backend.name} list`)")
        node = found[0]
        if node.state != RUNNING:
            raise EssError(f"{node.id} is {node.state}, not running"
                           + (f" (start it with: ess instance {backend.name} start {node.id})"
                              if backend.supports("start") else ""))
        return node
    running = [n for n in nodes if n.state == RUNNING]
    if running:
        return running[0]
    from .provision import no_running_nodes

    raise no_running_nodes(backend, settings, nodes)


def ssh_command(backend: Backend) -> click.Command:
    name = backend.name

    @click.command("ssh", cls=PassthroughCommand, epilog=EXIT_CODES_HELP,
                   help=f"""Log in to a node with OpenSSH (default: the first running node of `list`).

    Uses the cluster's user, key and known_hosts, host key checked. A command after `--`
    runs on the node instead of a login shell; the exit code is the command's (255: ssh
    itself failed).

    \\b
    Examples:
      ess instance {name} ssh
      ess instance {name} ssh {backend.example_node_id} -- uptime
    """)
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
            raise UsageError("ssh: the OpenSSH client is not installed (install openssh-client, "
                             f"or use `ess instance {name} exec -- CMD`)")
        argv = openssh_argv(access, target) + (["--", *remote] if remote else [])
        sys.stdout.flush()
        sys.stderr.flush()
        # Replace this process, as `flintrock login` does: the terminal belongs to ssh now.
        os.execv(program, argv)
    return ssh
