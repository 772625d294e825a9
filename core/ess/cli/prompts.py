"""Questions on the terminal before ess changes something: shared by every command that asks."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..errors import Declined, UsageError

if TYPE_CHECKING:
    from ..backend import Backend
    from ..models import Node, Settings


def confirm(action: str, nodes: list[Node], yes: bool) -> None:
    """Show what will change; ask on a terminal; require --yes elsewhere."""
    creators = sorted({n.tags.get("ess:created-by", "?") for n in nodes})
    shown = ", ".join(n.id for n in nodes[:10]) + (f" and {len(nodes) - 10} more" if len(nodes) > 10 else "")
    click.echo(f"{action}: {shown} (created by {', '.join(creators)})", err=True)
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("--yes: required to confirm when stdin is not a terminal (nothing was changed)")
    ask("Proceed?")


def launch_question(backend: Backend, settings: Settings, count: int) -> str:
    """What ``create`` and ``heal`` ask on a terminal before launching ``count`` nodes."""
    if backend.billable:
        kind = settings.get("instance_type") or "node"
        return f"Launch {count} x {kind} for cluster {settings.cluster!r} on {backend.name}?"
    return f"Add {count} node(s) to cluster {settings.cluster!r} on {backend.name}?"


def ask(question: str) -> None:
    """Ask on the terminal; "no" is Declined (exit 1). Ctrl-C at the prompt stays click's
    Abort, reported as an interruption (exit 130)."""
    if not click.confirm(question, default=False, err=True):
        raise Declined("aborted at the prompt; nothing was done")
