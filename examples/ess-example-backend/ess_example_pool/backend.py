"""The pool backend: nodes are machines from a fixed list, allocated to clusters.

Allocations live in one JSON file in ess's state folder, shared by every cluster and
guarded by a file lock (``ess.files.locked_json``), so two ``ess`` commands cannot hand out the
same machine.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from ess.backend import Backend
from ess.errors import UsageError
from ess.files import locked_json
from ess.models import RUNNING, Access, LaunchRequest, Node, Settings, SettingSpec
from ess.paths import state_dir
from ess.progress import Progress


def parse_host(entry: str, where: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "22")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{where}: {entry!r} is not host or host:port (write 10.0.0.5 or 10.0.0.5:2222)")
    return host, int(port)


class PoolBackend(Backend):
    name = "pool"
    description = "Machines allocated from a fixed on-prem pool (example third-party plugin)."
    settings = (
        SettingSpec(
            "hosts",
            type="list",
            default=[],
            commands=("*",),
            help="The pool: machines as host or host:port, comma-separated.",
        ),
        SettingSpec(
            "instance_count",
            type="int",
            default=1,
            minimum=1,
            flag="--number",
            help="How many machines to allocate to the cluster.",
        ),
        SettingSpec(
            "username",
            default=getpass.getuser(),
            default_help="your login name",
            help="SSH user on the pool's machines.",
        ),
        SettingSpec("key_file", type="path", required=True, help="Private key that logs in to the pool's machines."),
    )

    # -- allocation table -------------------------------------------------------------
    @staticmethod
    def state_file() -> Path:
        """The allocation table (public: the contract suite snapshots it)."""
        return state_dir() / "example-pool.json"

    def _table(self, write: bool = False):
        # ess.files: read-modify-write under a file lock, replaced atomically.
        return locked_json(self.state_file(), write=write)

    def _pool(self, settings: Settings) -> list[tuple[str, int]]:
        hosts = [parse_host(h, settings.where("hosts")) for h in settings["hosts"]]
        if not hosts:
            raise UsageError(f"{settings.where('hosts')}: no hosts in the pool (list machines as host:port)")
        return hosts

    # -- the Backend contract ---------------------------------------------------------
    def preflight(self, settings: Settings, request: LaunchRequest) -> list[tuple[str, int]]:
        # The parsed pool is the plan: the core hands it to create in request.plan.
        pool = self._pool(settings)
        key = settings.path("key_file")
        if key is None or not key.is_file():
            raise UsageError(f"{settings.where('key_file')}: no such key file {key} (point it at a private key)")
        with self._table() as table:
            free = [h for h in pool if f"{h[0]}:{h[1]}" not in table]
        if len(free) < request.count:
            raise UsageError(
                f"{settings.where('hosts')}: only {len(free)} of {len(pool)} machines are free, "
                f"{request.count} asked (add hosts or lower --number)"
            )
        return pool

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        with self._table(write=True) as table:
            # No per-command state on self: preflight's plan, or (no preflight) parse again.
            pool = request.plan if request.plan is not None else self._pool(settings)
            free = [h for h in pool if f"{h[0]}:{h[1]}" not in table]
            if len(free) < request.count:
                raise UsageError(f"{settings.where('hosts')}: only {len(free)} machines are free")
            chosen = free[: request.count]
            for host, port in chosen:
                table[f"{host}:{port}"] = {"host": host, "port": port, "tags": dict(request.tags)}
            return [self._node(table[f"{h}:{p}"], f"{h}:{p}") for h, p in chosen]

    def nodes(self, settings: Settings) -> list[Node]:
        with self._table() as table:
            return [
                self._node(row, key)
                for key, row in sorted(table.items())
                if row["tags"].get("ess:cluster") == settings.cluster
            ]

    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        with self._table(write=True) as table:
            for node in nodes:
                row = table.get(node.id)
                # Release only what this cluster holds: never another cluster's machine.
                if row is not None and row["tags"].get("ess:cluster") == settings.cluster:
                    del table[node.id]

    def access(self, settings: Settings) -> Access:
        key = settings.path("key_file")
        if key is None:
            raise UsageError(f"{settings.where('key_file')}: required to log in to the pool's machines")
        return Access(self.name, settings.cluster, settings["username"], key)

    @staticmethod
    def _node(row: dict[str, Any], key: str) -> Node:
        return Node(
            id=key, state=RUNNING, address=row["host"], port=row["port"], tags=row["tags"], instance_type="pool"
        )
