"""The local backend's node table: one JSON file per cluster, guarded by a file lock.

Layout under ``ess.paths.state_dir()/local/``::

    <cluster>.lock                  the lock (kept: deleting a lock file others may wait on is a race)
    <cluster>/state.json            nodes: pid, start time, port, host key, tags
    <cluster>/id_ed25519[.pub]      the cluster key pair, when ess generated it
    <cluster>/known_hosts           "[127.0.0.1]:port key" per node, for ssh by hand
    <cluster>/nodes/<id>/           host key, authorized_keys, ready file, log, home folder

Every read-modify-write happens inside :meth:`ClusterStore.locked`, and the file is
replaced atomically (temp file + ``os.replace``), so concurrent ``ess`` commands never see
or leave half a file, and none of their writes is lost.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ess.errors import EssError, UsageError
from ess.paths import state_dir

FORMAT_VERSION = 1
#: Seconds to wait for another ess command that holds the cluster's lock.
LOCK_TIMEOUT = 120.0
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class NodeRecord:
    """One node as recorded: enough to find, verify, restart and describe its process."""

    id: str
    pid: int
    start_time: str
    host_key: str
    tags: dict[str, str]
    instance_type: str
    launched_at: str
    port: int | None = None
    #: True after ``stop``: the process is gone on purpose, the node may be started again.
    stopped: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeRecord:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class ClusterState:
    nodes: dict[str, NodeRecord] = field(default_factory=dict)


class ClusterStore:
    """Files of one local cluster; :meth:`locked` gives exclusive read-modify-write access."""

    def __init__(self, cluster: str, where: str = "setting cluster") -> None:
        self.cluster = cluster
        check_cluster_name(cluster, where)
        self.root = root = state_dir() / "local"
        self.dir = root / cluster
        self.lock_path = root / f"{cluster}.lock"
        self.state_path = self.dir / "state.json"
        self.known_hosts = self.dir / "known_hosts"
        self.generated_key = self.dir / "id_ed25519"

    def node_dir(self, node_id: str) -> Path:
        return self.dir / "nodes" / node_id

    @contextmanager
    def locked(self) -> Iterator[ClusterState]:
        """Hold the cluster lock and yield its state; call :meth:`save` to write changes."""
        from filelock import FileLock, Timeout

        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT)
        try:
            lock.acquire()
        except Timeout:
            raise EssError(f"{self.lock_path}: another ess command has held this cluster's lock for "
                           f"{LOCK_TIMEOUT:.0f} s (wait for it to finish, then retry)") from None
        try:
            yield self._load()
        finally:
            lock.release()

    def read(self) -> ClusterState:
        """A consistent snapshot without waiting for writers (the file is always whole)."""
        return self._load()

    def _load(self) -> ClusterState:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return ClusterState()
        except (OSError, ValueError) as exc:
            raise EssError(f"{self.state_path}: unreadable local state ({exc}); "
                           "move it away to start afresh (its node processes must then be "
                           "stopped by hand)") from None
        nodes = {item["id"]: NodeRecord.from_json(item) for item in data.get("nodes", [])}
        return ClusterState(nodes=nodes)

    def save(self, state: ClusterState) -> None:
        """Write ``state`` atomically (call only inside :meth:`locked`)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = {"version": FORMAT_VERSION, "cluster": self.cluster,
                   "nodes": [asdict(record) for record in state.nodes.values()]}
        _atomic_write(self.state_path, json.dumps(payload, indent=1) + "\n")
        lines = [f"[127.0.0.1]:{record.port} {record.host_key}"
                 for record in state.nodes.values() if record.port]
        _atomic_write(self.known_hosts, "".join(line + "\n" for line in lines))

    def remove_all(self) -> None:
        """Delete the cluster's folder (call only inside :meth:`locked`, with no nodes left)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def check_cluster_name(cluster: str, where: str) -> None:
    """The cluster name becomes a folder name: allow only safe characters (no side effects)."""
    if not CLUSTER_NAME.match(cluster):
        raise UsageError(f"{where}: {cluster!r} cannot name a local cluster "
                         "(use letters, digits, '.', '_' or '-', at most 64)")


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
