"""``extend``: move a cluster's deadline (the tag everywhere, the node's own copy where it has one).

:mod:`ess.lifetime` holds the vocabulary (durations, tags, checks); this module is the flow
``ess instance <backend> extend --ttl 4h`` runs, apart from it because it needs the
provisioning and remote-execution flows, which themselves need :mod:`ess.lifetime`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from . import provision
from .errors import EssError, UsageError
from .lifetime import now_utc, seconds, stamp
from .models import RUNNING, TAG_EXPIRES, TERMINATED, CommandResult, Node, Settings
from .remote import run_command

if TYPE_CHECKING:
    from .backend import Backend
    from .progress import Progress


@dataclass
class Extended:
    """What ``extend`` did: the new deadline, the nodes whose tag moved, and per running node
    the result of moving its on-node deadline (empty where the node reads its record)."""

    expires: str
    nodes: list[Node]
    on_node: list[CommandResult] = field(default_factory=list)
    #: Nodes not running (stopped): their tag moved, their on-node deadline could not.
    not_running: list[Node] = field(default_factory=list)


def deadline_command(path: str, expires: datetime) -> str:
    """The shell command that moves the on-node deadline file ``path`` (``EPOCH STAMP``),
    written whole (temp file + mv) so the node's check never reads half of it."""
    line = f"{int(expires.timestamp())} {stamp(expires)}"
    return f'sudo -n sh -c \'printf "%s\\n" "{line}" > {path}.new && mv -f {path}.new {path}\''


def extend(
    backend: Backend, settings: Settings, ids: list[str], progress: Progress, now: datetime | None = None
) -> Extended:
    """Move the deadline of the cluster's nodes (all, or ``ids``) to now + ``max_lifetime``.

    From now, not from the old deadline: ``extend --ttl 4h`` means "end 4 hours from now",
    whatever was left. The tag moves on every node (one retag); where the node keeps its own
    copy (``backend.deadline_file``, ec2), the running nodes' copy moves over SSH.
    """
    ttl = seconds(settings, "max_lifetime")
    if ttl is None:
        raise UsageError(
            f"extend: give the new time limit with --ttl (e.g. ess instance {backend.name} extend --ttl 4h)"
        )
    if not backend.enforces_lifetime or not backend.supports("retag"):
        raise UsageError(
            f"extend: backend {backend.name} has no time limits to extend (its nodes do not end themselves)"
        )
    nodes = [n for n in provision.select(backend, settings, ids or ["all"]) if n.state != TERMINATED]
    if not nodes:
        raise EssError(f"extend: cluster {settings.cluster!r} has no nodes on {backend.name}")
    expires = (now or now_utc()) + timedelta(seconds=ttl)
    text = stamp(expires)
    progress.stage(f"moving the deadline of {len(nodes)} node(s) to {text}")
    with provision.interruptible(backend, "extend"):
        backend.retag(settings, nodes, {TAG_EXPIRES: text}, progress)
    progress.finish()
    result = Extended(expires=text, nodes=nodes, not_running=[n for n in nodes if n.state != RUNNING])
    running = [n for n in nodes if n.state == RUNNING]
    if backend.deadline_file and running:
        command = deadline_command(backend.deadline_file, expires)
        result.on_node = run_command(backend, settings, command, progress, targets=running)
    return result
