"""``ess instance <backend> extend --ttl 4h [ID...]``: move the cluster's deadline.

The flow is :func:`ess.deadlines.extend`; this module parses and presents. docs/lifetime.md
says what moves where.
"""

from __future__ import annotations

from typing import Any

import click

from ..backend import Backend
from ..deadlines import Extended
from ..errors import EssError, PartialFailure
from ..output import emit, emit_json, state_cell, table
from .options import EXIT_CODES_HELP, common_options, invocation, progress, setting_options
from .options import load_settings as load


def extend_command(backend: Backend) -> click.Command:
    name = backend.name

    @click.command(
        "extend",
        epilog=EXIT_CODES_HELP,
        help=f"""Move the deadline of the cluster's nodes (all, or the ids named) to now + --ttl.

    From now, not from the old deadline: --ttl 4h means "end 4 hours from now". The
    ess:expires tag moves on every node; where a node keeps its own copy of the deadline
    (ec2: /etc/ess/expires) it is rewritten over SSH on the running nodes. See
    docs/lifetime.md.

    \b
    Examples:
      ess instance {name} extend --ttl 4h
      ess instance {name} extend --ttl 2d {backend.example_node_id}
    """,
    )
    @click.argument("ids", nargs=-1, metavar="[ID...]")
    @setting_options(backend, "extend")
    @common_options
    def extend(ids: tuple[str, ...], **flags: Any) -> None:
        from ..deadlines import extend as extend_flow

        settings = load(backend, flags)
        result = extend_flow(backend, settings, list(dict.fromkeys(ids)), progress())
        if invocation().json:
            emit_json(
                {
                    "backend": name,
                    "cluster": settings.cluster,
                    "expires": result.expires,
                    "nodes": [_row_json(result, node.id, node.state) for node in result.nodes],
                }
            )
        else:
            keeps_copy = bool(backend.deadline_file)
            rows = [[n.id, state_cell(n), result.expires, _on_node(result, n.id, keeps_copy)] for n in result.nodes]
            emit(table(rows, ["id", "state", "expires", "on node"]))
        if backend.deadline_file and result.not_running:
            click.echo(
                f"ess: warning: {len(result.not_running)} node(s) not running keep their old on-node deadline "
                f"(only the tag moved): after `ess instance {name} start`, run extend again within minutes",
                err=True,
            )
        _verdict(result)

    return extend


def _on_node(result: Extended, node_id: str, keeps_copy: bool) -> str:
    """How the node's own copy of the deadline moved: ok, why not, or "-" where the node
    reads its tag or record (``keeps_copy`` False: nothing to move on the node)."""
    for item in result.on_node:
        if item.node_id == node_id:
            return "ok" if item.ok else f"FAILED: {item.error or f'exit {item.exit_code}'}"
    return "not running: tag only" if keeps_copy else "-"


def _row_json(result: Extended, node_id: str, state: str) -> dict[str, Any]:
    moved = next((item for item in result.on_node if item.node_id == node_id), None)
    return {
        "id": node_id,
        "state": state,
        "expires": result.expires,
        "on_node": None if moved is None else {"ok": moved.ok, "exit_code": moved.exit_code, "error": moved.error},
    }


def _verdict(result: Extended) -> None:
    """A node whose own deadline did not move still ends at the old one: that fails extend."""
    failed = [item for item in result.on_node if not item.ok]
    if not failed:
        return
    names = ", ".join(f"{item.node_id} ({item.error or f'exit {item.exit_code}'})" for item in failed[:5])
    message = (
        f"the on-node deadline of {len(failed)} of {len(result.on_node)} node(s) did not move; "
        f"they still end at their old deadline: {names}"
    )
    raise PartialFailure(message) if len(failed) < len(result.on_node) else EssError(message)
