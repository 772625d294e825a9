"""Time limits of a cluster: how long its nodes may live (``max_lifetime``, ``--ttl``) and how
long they may sit idle (``idle_timeout``, ``--idle``), enforced by the nodes themselves.

A forgotten cluster is the costly failure: the master that made it may be a laptop that is
gone, so the limits travel with the nodes (a user-data part on EC2, the node process's own
clock on local) and nothing here needs ess to run again. This module owns the vocabulary:
durations, the deadline, the tags every node carries from birth, the checks made before a
launch (``extend`` is in :mod:`ess.deadlines`). docs/lifetime.md is the user's guide.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError
from .log import warn
from .models import TAG_EXPIRES, Node, Settings, Value

if TYPE_CHECKING:
    from .backend import Backend

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


#: The deadline the last launch request of a command got, per Settings object (the command's),
#: so a backend that writes the deadline onto its nodes (ec2's user data) writes the tag's
#: second, not its own "now + ttl" a moment later. Weak: the entry goes with the command.
_deadlines: dict[int, tuple[weakref.ref[Settings], datetime]] = {}
_lock = threading.Lock()


def launch_deadline(settings: Settings) -> datetime | None:
    """The deadline :func:`launch_tags` last set for this command's launch, or None."""
    with _lock:
        entry = _deadlines.get(id(settings))
    return entry[1] if entry is not None and entry[0]() is settings else None


def _remember(settings: Settings, deadline: datetime) -> None:
    key = id(settings)

    def forget(ref: weakref.ref[Settings], key: int = key) -> None:
        with _lock:
            if _deadlines.get(key, (None,))[0] is ref:
                del _deadlines[key]

    with _lock:
        _deadlines[key] = (weakref.ref(settings, forget), deadline)


def launch_tags(settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """The tags a new node carries for its limits: ``ess:expires`` (now + ttl) and the idle
    limit and action. Empty when no limit is set."""
    chosen = limits(settings)
    tags: dict[str, str] = {}
    if chosen.ttl is not None:
        deadline = (now or now_utc()) + timedelta(seconds=chosen.ttl)
        _remember(settings, deadline)
        tags[TAG_EXPIRES] = stamp(deadline)
    if chosen.idle is not None:
        tags[TAG_IDLE_TIMEOUT] = str(chosen.idle)
        tags[TAG_IDLE_ACTION] = chosen.idle_action
    return tags


#: Shortest time left for which ``heal`` still launches replacements with the cluster's deadline.
SHORTEST_HEAL = 90


def for_replacements(settings: Settings, survivors: list[Node], now: datetime | None = None) -> Settings:
    """``settings`` for nodes that replace lost ones (``heal``): they end with the cluster.

    Their ``max_lifetime`` becomes the time left to the survivors' latest ``ess:expires``
    (the cluster's deadline as ``create --ttl`` and ``extend`` left it), whatever the config
    says now: a replacement that outlived the cluster would run unwatched, one that ended
    first would make the cluster lost again. Unchanged when no survivor has a deadline.
    UsageError when the cluster is about to end anyway.
    """
    deadlines = [d for d in (parse_stamp(n.expires) for n in survivors) if d is not None]
    if not deadlines:
        return settings
    latest = max(deadlines)
    left = int((latest - (now or now_utc())).total_seconds())
    if left < SHORTEST_HEAL:
        raise UsageError(
            f"heal: the cluster's nodes end at {stamp(latest)} ({max(left, 0)}s from now): "
            "extend it first (ess instance <backend> extend --ttl 4h), or let it end"
        )
    values = dict(settings.values)
    values["max_lifetime"] = Value(f"{left}s", f"the cluster's {TAG_EXPIRES} ({stamp(latest)})")
    return replace(settings, values=values)


def check(backend: Backend, settings: Settings) -> Limits:
    """Before a launch: the limits are valid, and the user is told, once, when they will not
    hold (a backend whose nodes cannot end themselves) or when a billable cluster has none."""
    chosen = limits(settings)
    flags = [f for f, value in (("--ttl", chosen.ttl), ("--idle", chosen.idle)) if value is not None]
    if flags and not backend.enforces_lifetime:
        after = (
            f"end them with: ess instance {backend.name} terminate all"
            if backend.ends_nodes
            else "they are your machines: ess never shuts them down"
        )
        warn(
            f"ess: warning: backend {backend.name} cannot enforce {' and '.join(flags)} "
            f"(its nodes do not end themselves); {after}"
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
