"""How to log in to a node with OpenSSH: the command line, the config entries, the node to pick.

The ``ssh`` and ``ssh-config`` commands (:mod:`ess.cli.remote`) are built on these.

The core learns how to log in from :meth:`ess.backend.Backend.access` alone: the user,
the private key, and ``Access.known_hosts``, the file holding the nodes' host keys (the
local backend writes its own; otherwise the SSH plugin's per-cluster file,
:func:`ess.paths.known_hosts_file`). Host keys are always checked
(``StrictHostKeyChecking yes``): a node whose key is not in that file yet is refused,
never trusted blindly (``verify`` records the keys of cloud nodes).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .backend import Backend
from .errors import EssError, UsageError
from .models import RUNNING, Access, Node, Settings


def known_hosts_of(access: Access) -> Path:
    from .paths import known_hosts_file

    return access.known_hosts or known_hosts_file(access.backend, access.cluster)


def openssh_argv(access: Access, node: Node) -> list[str]:
    """The ``ssh`` command line that logs in to ``node``, its host key checked."""
    return [
        "ssh",
        "-i",
        str(access.key_file),
        "-p",
        str(node.port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts_of(access)}",
        "-o",
        "StrictHostKeyChecking=yes",
        f"{access.username}@{node.address}",
    ]


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
    return [
        {
            "Host": n.id,
            "HostName": n.address,
            "Port": n.port,
            "User": access.username,
            "IdentityFile": str(access.key_file),
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(known_hosts_of(access)),
            "StrictHostKeyChecking": "yes",
        }
        for n in nodes
        if n.address and n.port
    ]


def config_text(entries: list[dict[str, Any]]) -> str:
    blocks = []
    for entry in entries:
        lines = [f"Host {entry['Host']}"]
        lines += [f"  {key} {_quoted(value)}" for key, value in entry.items() if key != "Host"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def pick_node(backend: Backend, settings: Settings, wanted: str | None) -> Node:
    """The node ``ssh`` logs in to: the one named, else the first running row of ``list``."""
    nodes = backend.nodes(settings)
    if wanted is not None:
        found = [n for n in nodes if n.id == wanted]
        if not found:
            shown = ", ".join(n.id for n in nodes[:5]) or "none"
            raise UsageError(
                f"NODE: {wanted!r} is not a node of cluster {settings.cluster!r} "
                f"(its nodes: {shown}; see `ess instance {backend.name} list`)"
            )
        node = found[0]
        if node.state != RUNNING:
            raise EssError(
                f"{node.id} is {node.state}, not running"
                + (
                    f" (start it with: ess instance {backend.name} start {node.id})"
                    if backend.supports("start")
                    else ""
                )
            )
        return node
    running = [n for n in nodes if n.state == RUNNING]
    if running:
        return running[0]
    from .provision import no_running_nodes

    raise no_running_nodes(backend, settings, nodes)
