"""Every local cluster on this machine, for ``ess clusters``: one per folder under the state dir.

A local cluster is a folder ``ess.paths.state_dir()/local/<cluster>/`` (see state.py); its
nodes are read exactly as ``list`` reads them (records, node folders, the process table),
so a cluster whose processes all died still shows, as ``list`` would show it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from ess.errors import EssError
from ess.models import ClusterInventory, ClusterSummary, Node, Settings, Value
from ess.names import CLUSTER_NAME
from ess.paths import state_dir

from .state import UNKNOWN_TIME

if TYPE_CHECKING:
    from .backend import LocalBackend

_UNKNOWN = datetime.fromisoformat(UNKNOWN_TIME)


def clusters(backend: LocalBackend, settings: Settings) -> ClusterInventory:
    root = state_dir() / "local"
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and CLUSTER_NAME.match(p.name)) if root.is_dir() else []
    found: list[ClusterSummary] = []
    failures: list[str] = []
    for name in names:
        # The same settings, pointed at this cluster: nodes() reads it as `list --cluster NAME` does.
        values = {**settings.values, "cluster": Value(name, "ess clusters")}
        try:
            nodes = backend.nodes(replace(settings, values=values))
        except EssError as exc:
            failures.append(f"cluster {name}: {exc}")
            continue
        if nodes:
            found.append(ClusterSummary(backend=backend.name, cluster=name, nodes=tuple(_known_time(n) for n in nodes)))
    return ClusterInventory(clusters=tuple(found), failures=tuple(failures))


def _known_time(node: Node) -> Node:
    """A node rebuilt without its launch time says so (None), rather than 1970."""
    return replace(node, launched_at=None) if node.launched_at == _UNKNOWN else node
