"""How whole a cluster is: the size it is meant to have against what it has now.

The intended size lives on the nodes themselves (the ``ess:size`` tag, set at launch by
:func:`ess.provision.launch_request`), so any master with the config knows it and no local
state is needed. The rules, documented in docs/commands.md (``heal``):

* A cluster's intended size is the ``ess:size`` of its most recently launched node (by
  ``ess:created-at``, then launch time; on a tie the larger size): a later ``create`` wins.
  Nodes that still exist are asked first, so one terminated long ago and still listed by
  the cloud cannot outvote the survivors that ``terminate ID`` retagged.
* Nodes adopted with ``add`` carry no size: they count toward what runs, never toward
  what is intended.
* A lost node (ess wants it running and it is not) is missing; a node stopped with
  ``ess stop`` is not (``start`` resumes it, ``heal`` does not replace it), nor is one that
  ended itself at its ``ess:expires`` deadline (``--ttl``): heal never outlives a deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .lifetime import parse_stamp
from .models import (
    PENDING,
    RUNNING,
    SHUTTING_DOWN,
    TAG_ADOPTED,
    TAG_CREATED_AT,
    TAG_SIZE,
    TERMINATED,
    Node,
)

#: States of a node that no longer exists (EC2 lists a terminated instance for about an hour).
GONE = (TERMINATED, SHUTTING_DOWN)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def adopted(node: Node) -> bool:
    """A machine ess did not launch, made a member with ``add``."""
    return node.tags.get(TAG_ADOPTED) == "true"


def recorded_size(node: Node) -> int | None:
    """The ``ess:size`` a launched node carries, or None (adopted, older ess, bad value)."""
    if adopted(node):
        return None
    text = node.tags.get(TAG_SIZE, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def intended_size(nodes: Sequence[Node]) -> int | None:
    """The cluster's intended size (see the module docstring), or None when no node records one."""
    sized = [n for n in nodes if recorded_size(n) is not None]
    alive = [n for n in sized if n.state not in GONE]
    pool = alive or sized
    if not pool:
        return None
    latest = max(pool, key=lambda n: (n.tags.get(TAG_CREATED_AT, ""), _launched(n), recorded_size(n) or 0))
    return recorded_size(latest)


def expired(node: Node, now: datetime | None = None) -> bool:
    """Lost, and past its ``ess:expires`` deadline: it ended itself on purpose (``--ttl``)."""
    deadline = parse_stamp(node.expires)
    return deadline is not None and node.lost and deadline <= (now or datetime.now(timezone.utc))


def _launched(node: Node) -> datetime:
    when = node.launched_at
    if when is None:
        return _EPOCH
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Census:
    """The cluster counted for ``status`` and ``heal``.

    ``intended`` is None when no node records a size. ``present`` are the nodes ``heal``
    leaves alone: running, starting, or stopped on purpose; ``lost`` ones are missing.
    """

    intended: int | None
    nodes: tuple[Node, ...]

    @classmethod
    def of(cls, nodes: Sequence[Node]) -> Census:
        return cls(intended=intended_size(nodes), nodes=tuple(nodes))

    @property
    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.state == RUNNING]

    @property
    def pending(self) -> list[Node]:
        return [n for n in self.nodes if n.state == PENDING]

    @property
    def lost(self) -> list[Node]:
        """Lost nodes, but not those that ended at their deadline (:attr:`expired`)."""
        return [n for n in self.nodes if n.lost and not expired(n)]

    @property
    def expired(self) -> list[Node]:
        """Nodes that ended themselves at their ``ess:expires`` deadline: neither missing nor lost."""
        return [n for n in self.nodes if expired(n)]

    @property
    def present(self) -> list[Node]:
        """Members that need no replacement: not lost and not gone (stopped on purpose included)."""
        return [n for n in self.nodes if not n.lost and n.state not in GONE]

    @property
    def stopped(self) -> list[Node]:
        """Present but neither running nor starting: stopped with ``ess stop`` (``start`` resumes)."""
        return [n for n in self.present if n.state not in (RUNNING, PENDING)]

    @property
    def missing(self) -> int:
        """How many nodes ``heal`` launches: the intended size less the present members
        and the expired ones (their deadline holds for the cluster: heal does not undo it)."""
        if self.intended is None:
            return 0
        return max(0, self.intended - len(self.present) - len(self.expired))

    @property
    def replaceable(self) -> list[Node]:
        """Lost nodes ess launched that still exist (crashed, stopped behind ess's back):
        ``heal`` terminates them once their replacements passed verification."""
        return [n for n in self.lost if n.state not in GONE and not adopted(n)]

    def summary(self) -> str:
        """``3/5 running (2 lost)``: running against the intended size (the node count when unknown)."""
        of = self.intended if self.intended is not None else len(self.nodes)
        extra = [
            f"{len(group)} {word}"
            for group, word in (
                (self.pending, "pending"),
                (self.stopped, "stopped"),
                (self.lost, "lost"),
                (self.expired, "expired"),
            )
            if group
        ]
        return f"{len(self.running)}/{of} running" + (f" ({', '.join(extra)})" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        """The counts ``status --json`` and ``heal --json`` carry (documented in docs/commands.md)."""
        return {
            "intended": self.intended,
            "running": len(self.running),
            "pending": len(self.pending),
            "stopped": len(self.stopped),
            "lost": len(self.lost),
            "expired": len(self.expired),
            "missing": self.missing,
        }
