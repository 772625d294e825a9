"""``ess clusters``: one view of every ess cluster these credentials can see (issue 16).

The flow: ask every backend that supports :meth:`~ess.backend.Backend.clusters` (each with
the settings of whatever config was found: its credentials and region), gather their
:class:`~ess.models.ClusterSummary` groups, derive one :class:`ClusterRow` per cluster
(nodes by state, types, age, creator, expiry, the config it came from), mark the ones
that look forgotten, and give each the exact command that terminates it.

A backend that cannot be asked (no credentials, no network) costs its rows and one warning
line, never the others' rows: the report then says it is partial (exit 3).
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import origins
from .errors import EssError
from .models import (
    STATES,
    TAG_CREATED_AT,
    TAG_CREATED_BY,
    ClusterSummary,
    Node,
    Settings,
)
from .progress import Progress

if TYPE_CHECKING:
    from .backend import Backend

#: A cluster with no expiry older than this is marked: most forgotten clusters are found
#: by someone wondering, a day later, what is still running.
OLD_WITHOUT_LIMIT = timedelta(days=1)
#: The marks, as the table and the JSON write them.
MARK_EXPIRED = "EXPIRED"
MARK_OLD = "OLD, NO LIMIT"
_EPOCH = datetime.fromtimestamp(0, timezone.utc)


@dataclass(frozen=True)
class ClusterRow:
    """One cluster as ``ess clusters`` shows it."""

    summary: ClusterSummary
    states: Mapping[str, int]
    instance_types: tuple[str, ...]
    created_at: datetime | None
    created_by: tuple[str, ...]
    #: The earliest deadline among the nodes (``ess:expires``); None when no node has one.
    expires: datetime | None
    config: Path | None
    marks: tuple[str, ...]
    terminate: str

    def age(self, now: datetime) -> timedelta | None:
        return None if self.created_at is None else max(now - self.created_at, timedelta(0))

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """The stable JSON shape of a row (documented in docs/clusters.md)."""
        age = self.age(now)
        s = self.summary
        return {
            "backend": s.backend,
            "region": s.region,
            "cluster": s.cluster,
            "key_pair": s.key_pair,
            "nodes": dict(self.states),
            "node_count": sum(self.states.values()),
            "node_ids": [n.id for n in s.nodes],
            "instance_types": list(self.instance_types),
            "created_at": _iso(self.created_at),
            "age_seconds": int(age.total_seconds()) if age is not None else None,
            "created_by": list(self.created_by),
            "expires": _iso(self.expires),
            "marks": list(self.marks),
            "config": str(self.config) if self.config else None,
            "terminate": self.terminate,
        }


@dataclass
class Report:
    """Every row, plus what could not be seen (``failures``) and notes worth a line."""

    rows: list[ClusterRow] = field(default_factory=list)
    #: Backends asked, in order.
    backends: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Backends that could not be asked at all (their ``clusters`` raised).
    unreachable: list[str] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def partial(self) -> bool:
        return bool(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clusters": [row.to_dict(self.now) for row in self.rows],
            "backends": list(self.backends),
            "failures": list(self.failures),
            "notes": list(self.notes),
            "partial": self.partial,
        }


def survey(
    backends: Iterable[tuple[Backend, Settings]],
    all_regions: bool,
    progress: Progress,
    *,
    config: Path | None = None,
    now: datetime | None = None,
) -> Report:
    """Ask each backend (with its settings) for its clusters; one row per cluster.

    ``config`` is the config file these settings came from: the terminate command names it
    when the cluster's own config is not on record, so it runs with the same credentials.
    """
    report = Report(now=now or datetime.now(timezone.utc))
    for backend, settings in backends:
        report.backends.append(backend.name)
        try:
            found = backend.clusters(settings, all_regions, progress)
        except EssError as exc:
            report.failures.append(f"{backend.name}: {exc}")
            report.unreachable.append(backend.name)
            continue
        finally:
            progress.finish()
        report.failures += [f"{backend.name}: {line}" for line in found.failures]
        report.notes += [f"{backend.name}: {line}" for line in found.notes]
        summaries = [s for s in found.clusters if s.nodes]
        known = origins.configs_of(n.launch_id for s in summaries for n in s.nodes if n.launch_id)
        # What `ess clusters` was told on its command line (--profile work) applies to the
        # terminate commands too: those credentials are the ones that saw the clusters.
        carried = {
            key: str(value.value)
            for key, value in settings.values.items()
            if value.source.startswith("--") and key != "cluster" and value.value is not None
        }
        for summary in summaries:
            report.rows.append(row_of(backend, summary, known, config, report.now, carried))
    report.rows.sort(key=_order)
    return report


def row_of(
    backend: Backend,
    summary: ClusterSummary,
    known: Mapping[str, Path],
    fallback: Path | None,
    now: datetime,
    carried: Mapping[str, str] | None = None,
) -> ClusterRow:
    nodes = summary.nodes
    states = Counter(n.state for n in nodes)
    ordered = {state: states[state] for state in STATES if states[state]}
    ordered.update({state: count for state, count in states.items() if state not in ordered})
    created = [t for t in (_created(n) for n in nodes) if t is not None]
    deadlines = [t for t in (_parse(n.expires) for n in nodes) if t is not None]
    expires = min(deadlines) if deadlines else None
    created_at = min(created) if created else None
    # The config of the newest launch on record: a cluster grown by later creates is
    # managed from the config that made its latest nodes.
    newest = max(
        ((_created(n) or _EPOCH, n.launch_id) for n in nodes if n.launch_id and n.launch_id in known),
        default=None,
    )
    config = known[newest[1]] if newest else None
    marks: list[str] = []
    if expires is not None and expires <= now:
        marks.append(MARK_EXPIRED)
    elif expires is None and created_at is not None and now - created_at > OLD_WITHOUT_LIMIT:
        marks.append(MARK_OLD)
    return ClusterRow(
        summary=summary,
        states=ordered,
        instance_types=tuple(sorted({n.instance_type for n in nodes if n.instance_type})),
        created_at=created_at,
        created_by=tuple(sorted({_printable(n.tags[TAG_CREATED_BY]) for n in nodes if n.tags.get(TAG_CREATED_BY)})),
        expires=expires,
        config=config,
        marks=tuple(marks),
        terminate=terminate_command(backend, summary, config, fallback, carried),
    )


def terminate_command(
    backend: Backend,
    summary: ClusterSummary,
    config: Path | None,
    fallback: Path | None,
    carried: Mapping[str, str] | None = None,
) -> str:
    """The exact ``ess instance <backend> terminate all`` that ends this cluster, as shell text.

    Each selector becomes its setting's flag when it has one (``--region``), else its
    environment variable (``ESS_KEY_NAME=...``), which is given only when the cluster's own
    config is not known: that config already says it, and may say it as a path. ``carried``
    settings (given to ``ess clusters`` itself, e.g. ``--profile``) follow, where
    ``terminate`` has their flag; the cluster's own selectors win over them.
    """
    from .settings import specs_for

    specs = specs_for(backend.settings)
    env: list[str] = []
    flags: list[str] = []
    chosen_values = {**{k: v for k, v in (carried or {}).items() if k in specs and specs[k].flag}, **summary.selectors}
    for key, value in chosen_values.items():
        spec = specs.get(key)
        if spec is None:
            continue
        if spec.flag and ("*" in spec.commands or "terminate" in spec.commands):
            flags += [spec.flag, value]
        elif config is None:
            env.append(f"{spec.env}={shlex.quote(value)}")
    words = ["ess", "instance", backend.name, "terminate", "all", "--cluster", summary.cluster, *flags]
    chosen = config or fallback
    if chosen is not None:
        words += ["--config", str(chosen)]
    return " ".join([*env, *(shlex.quote(word) for word in words)])


def table_rows(report: Report) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for row in report.rows:
        s = row.summary
        rows.append(
            [
                s.backend,
                s.region or "-",
                s.cluster,
                " ".join(f"{count} {state}" for state, count in row.states.items()),
                ",".join(row.instance_types) or "-",
                _age(row.age(report.now)),
                ",".join(row.created_by) or "-",
                _expiry(row.expires, report.now),
                s.key_pair or "-",
                str(row.config) if row.config else "-",
                ", ".join(row.marks) or "",
                row.terminate,
            ]
        )
    return rows


HEADERS = [
    "backend",
    "region",
    "cluster",
    "nodes",
    "types",
    "age",
    "created_by",
    "expires",
    "key_pair",
    "config",
    "mark",
    "terminate with",
]


def _order(row: ClusterRow) -> tuple[str, str, str, str]:
    s = row.summary
    return (s.backend, s.region or "", s.cluster, s.key_pair or "")


# -- small readers -----------------------------------------------------------------------
def _printable(text: str, limit: int = 64) -> str:
    """A tag value anyone may have written, safe on a terminal: control characters (an
    escape sequence could rewrite the screen) become '?', and it is cut to ``limit``."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _created(node: Node) -> datetime | None:
    """When the node was launched: the cloud's own time, else the ``ess:created-at`` tag."""
    if node.launched_at is not None:
        return node.launched_at if node.launched_at.tzinfo else node.launched_at.replace(tzinfo=timezone.utc)
    return _parse(node.tags.get(TAG_CREATED_AT))


def _parse(text: str | None) -> datetime | None:
    """A tag's UTC time (``YYYY-MM-DDTHH:MM:SSZ``); None when absent or not a time (a tag
    anyone can write must not stop the view)."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _age(age: timedelta | None) -> str:
    if age is None:
        return "-"
    minutes = int(age.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m"


def _expiry(expires: datetime | None, now: datetime) -> str:
    if expires is None:
        return "-"
    left = expires - now
    if left <= timedelta(0):
        return f"{_iso(expires)} ({_age(-left)} ago)"
    return f"{_iso(expires)} (in {_age(left)})"
