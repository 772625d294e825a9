"""Time limits of a cluster: how long its nodes may live (``max_lifetime``, ``--ttl``) and how
long they may sit idle (``idle_timeout``, ``--idle``), enforced by the nodes themselves.

A forgotten cluster is the costly failure: the master that made it may be a laptop that is
gone, so the limits travel with the nodes (a user-data part on EC2, the node process's own
clock on local) and nothing here needs ess to run again. This module owns the vocabulary:
durations, the deadline, the tags every node carries from birth, the checks made before a
launch, and the ``extend`` flow that moves a deadline. docs/lifetime.md is the user's guide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EssError, UsageError
from .log import warn
from .models import RUNNING, TAG_EXPIRES, TERMINATED, CommandResult, Node, Settings

if TYPE_CHECKING:
    from .backend import Backend
    from .progress import Progress

#: The idle limit and what happens at it, recorded on each node (local nodes read them
#: back from their record; on EC2 they say what the user-data part installed).
TAG_IDLE_TIMEOUT = "ess:idle-timeout"
TAG_IDLE_ACTION = "ess:idle-action"

#: What ``--idle-action`` may say; a node that ends itself is terminated unless told to stop.
TERMINATE, STOP = "terminate", "stop"
IDLE_ACTIONS = (TERMINATE, STOP)
#: "No limit": overrides a default from a config file or the user-level defaults.
NONE = "none"

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: A whole number and one unit; the settings' pattern (syntax) is checked when settings
#: are resolved, the range (:data:`LONGEST`) by :func:`seconds`.
DURATION = r"none|[1-9][0-9]{0,6}[smhd]"
DURATION_HELP = "a duration: a whole number and s, m, h or d, e.g. 90s, 30m, 8h or 2d; or none"
#: The longest limit: past three months the net no longer catches much (and a typo such
#: as 800d would silently mean "never").
LONGEST = 90 * 86400
#: The timestamp format of ``ess:expires`` (UTC).
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def seconds(settings: Settings, key: str) -> int | None:
    """The duration ``key`` holds in seconds, None when unset or ``none``; UsageError naming
    where it was set when it is out of range (the syntax was checked by its pattern)."""
    raw = settings.get(key)
    if raw in (None, "", NONE):
        return None
    match = re.fullmatch(r"([1-9][0-9]*)([smhd])", str(raw))
    if match is None:  # settings resolved without the pattern (a plugin's own spec): say it here
        raise UsageError(f"{settings.where(key)}: {str(raw)[:40]!r} is not {DURATION_HELP}")
    value = int(match.group(1)) * UNITS[match.group(2)]
    if value > LONGEST:
        raise UsageError(f"{settings.where(key)}: {raw} is too long (at most {LONGEST // 86400}d)")
    return value


@dataclass(frozen=True)
class Limits:
    """A cluster's limits, resolved: seconds (None = no limit) and the idle action."""

    ttl: int | None = None
    idle: int | None = None
    idle_action: str = TERMINATE

    @property
    def any(self) -> bool:
        return self.ttl is not None or self.idle is not None


def limits(settings: Settings) -> Limits:
    """The limits ``settings`` ask for (UsageError naming the option when one is out of range)."""
    action = str(settings.get("idle_action") or TERMINATE)
    return Limits(seconds(settings, "max_lifetime"), seconds(settings, "idle_timeout"), action)


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    """``moment`` as ``ess:expires`` writes it (UTC, whole seconds)."""
    return moment.astimezone(timezone.utc).strftime(STAMP)


def parse_stamp(text: str | None) -> datetime | None:
    """An ``ess:expires`` value back as an aware datetime; None if absent or not one."""
    if not text:
        return None
    try:
        return datetime.strptime(text, STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def launch_tags(settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """The tags a new node carries for its limits: ``ess:expires`` (now + ttl) and the idle
    limit and action. Empty when no limit is set."""
    chosen = limits(settings)
    tags: dict[str, str] = {}
    if chosen.ttl is not None:
        tags[TAG_EXPIRES] = stamp((now or now_utc()) + timedelta(seconds=chosen.ttl))
    if chosen.idle is not None:
        tags[TAG_IDLE_TIMEOUT] = str(chosen.idle)
        tags[TAG_IDLE_ACTION] = chosen.idle_action
    return tags


def check(backend: Backend, settings: Settings) -> Limits:
    """Before a launch: the limits are valid, and the user is told, once, when they will not
    hold (a backend whose nodes cannot end themselves) or when a billable cluster has none."""
    chosen = limits(settings)
    flags = [f for f, value in (("--ttl", chosen.ttl), ("--idle", chosen.idle)) if value is not None]
    if flags and not backend.enforces_lifetime:
        warn(
            f"ess: warning: backend {backend.name} cannot enforce {' and '.join(flags)} (its nodes do not end "
            f"themselves); end them with: ess instance {backend.name} terminate all"
        )
    elif backend.billable and chosen.ttl is None and chosen.idle is None:
        warn(
            f"ess: note: cluster {settings.cluster!r} has no time limit and bills until it is terminated "
            "(set one with --ttl 8h or --idle 30m, or max_lifetime in the config; see docs/lifetime.md)"
        )
    return chosen


def agent_script() -> Path:
    """The node agent (POSIX sh) shipped with ess: the local node runs it, ec2's user data embeds it."""
    return Path(__file__).with_name("agent") / "ess-agent.sh"


def time_left(node: Node, now: datetime | None = None) -> str | None:
    """What ``status`` shows of a node's deadline: ``3h05m``, ``2d 4h``, ``expired``; None without one."""
    deadline = parse_stamp(node.expires)
    if deadline is None:
        return None
    left = int((deadline - (now or now_utc())).total_seconds())
    if left <= 0:
        return "expired"
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# -- extend ---------------------------------------------------------------------------------
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
    from . import provision
    from .remote import run_command

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
