"""The local backend's node records: one per node folder, indexed by a per-cluster file.

Layout under ``ess.paths.state_dir()/local/``::

    <cluster>.lock                  the lock (kept: deleting a lock file others may wait on is a race)
    <cluster>/state.json            index of the nodes: pid, start time, port, host key, tags
    <cluster>/id_ed25519[.pub]      the cluster key pair, when ess generated it
    <cluster>/known_hosts           "[127.0.0.1]:port key" per node, for ssh by hand
    <cluster>/nodes/<id>/           node.json (the node's own record), host key,
                                    authorized_keys, ready file, log, home folder

A node's folder and its ``node.json`` are written *before* its process is spawned, so no
moment exists where a node process runs without a record on disk. ``state.json`` is an
index of those records: when it is missing, damaged or of the wrong shape, the records are
rebuilt from the node folders (and the backend adds any live node process it finds in the
process table), so losing it orphans nothing.

Everything read back from disk is untrusted: node ids must have the shape ess generates
(``local-`` and 8 hex digits) before they become part of a path, and every field must
have its type, or the record is rebuilt from what else is on disk.

Every read-modify-write happens inside :meth:`ClusterStore.locked`, and files are
replaced atomically (temp file + ``os.replace``), so concurrent ``ess`` commands never see
or leave half a file, and none of their writes is lost.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ess.errors import EssError, UsageError
from ess.files import atomic_write, file_lock
from ess.names import CLUSTER_NAME
from ess.paths import state_dir

FORMAT_VERSION = 1
#: Seconds to wait for another ess command that holds the cluster's lock.
LOCK_TIMEOUT = 120.0
#: The only node ids ess generates, and the only ones it will turn into a path.
NODE_ID = re.compile(r"^local-[0-9a-f]{8}\Z")
#: What a record gets when its launch time is unknown (rebuilt from a bare process).
UNKNOWN_TIME = "1970-01-01T00:00:00+00:00"


def valid_node_id(node_id: object) -> bool:
    return isinstance(node_id, str) and NODE_ID.match(node_id) is not None


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
    def from_json(cls, data: object) -> NodeRecord:
        """A record from untrusted JSON; ValueError naming the first field that is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a node is not an object")
        node_id = data.get("id")
        if not valid_node_id(node_id):
            raise ValueError(f"node id {str(node_id)[:80]!r} is not of the form local-<8 hex digits>")
        node_id = str(node_id)  # valid_node_id accepted it: a str (mypy cannot see through the check)
        pid, port = data.get("pid", 0), data.get("port")
        if type(pid) is not int or not 0 <= pid < 2**22:
            raise ValueError(f"{node_id}: pid {pid!r} is not a process id")
        if port is not None and (type(port) is not int or not 0 < port < 65536):
            raise ValueError(f"{node_id}: port {port!r} is not a TCP port")
        texts = {key: data.get(key, "") for key in ("start_time", "host_key", "instance_type", "launched_at")}
        for key, value in texts.items():
            if not isinstance(value, str):
                raise ValueError(f"{node_id}: {key} is not a string")
        tags = data.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise ValueError(f"{node_id}: tags are not a map of strings")
        stopped = data.get("stopped", False)
        if type(stopped) is not bool:
            raise ValueError(f"{node_id}: stopped is not true or false")
        return cls(
            id=node_id,
            pid=pid,
            port=port,
            tags=dict(tags),
            stopped=stopped,
            start_time=texts["start_time"],
            host_key=texts["host_key"],
            instance_type=texts["instance_type"] or "local",
            launched_at=_iso_or_unknown(texts["launched_at"]),
        )


@dataclass
class ClusterState:
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    #: Why some of it had to be rebuilt from the node folders ("" when state.json was fine).
    rebuilt: str = ""


class ClusterStore:
    """Files of one local cluster; :meth:`locked` gives exclusive read-modify-write access."""

    def __init__(self, cluster: str, where: str = "setting cluster") -> None:
        self.cluster = cluster
        check_cluster_name(cluster, where)
        # Absolute: node processes get these paths in their argv, and are found by them.
        self.root = root = state_dir().absolute() / "local"
        self.dir = root / cluster
        self.nodes_dir = self.dir / "nodes"
        self.lock_path = root / f"{cluster}.lock"
        self.state_path = self.dir / "state.json"
        self.known_hosts = self.dir / "known_hosts"
        self.generated_key = self.dir / "id_ed25519"
        #: node.json text last read or written per node: unchanged records are not rewritten.
        self._node_files: dict[str, str] = {}

    def node_dir(self, node_id: str) -> Path:
        """The folder of a node; only a well-formed id ever becomes a path."""
        if not valid_node_id(node_id):
            raise EssError(f"local backend: refusing node id {node_id[:80]!r} (not of the form local-<8 hex digits>)")
        return self.nodes_dir / node_id

    def make_dirs(self) -> None:
        """The cluster folder and ``nodes/``, mode 0700 each (mkdir's parents= ignores mode)."""
        for folder in (self.root, self.dir, self.nodes_dir):
            folder.mkdir(mode=0o700, exist_ok=True)
            if folder.stat().st_mode & 0o077:  # made 0755 by an older ess: private from now on
                folder.chmod(0o700)

    @contextmanager
    def locked(self) -> Iterator[ClusterState]:
        """Hold the cluster lock and yield its state; call :meth:`save` to write changes."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise unwritable(self.root, exc) from None
        busy = (
            f"{self.lock_path}: another ess command has held this cluster's lock for "
            f"{LOCK_TIMEOUT:.0f} s (wait for it to finish, then retry)"
        )
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(self.lock_path, timeout=LOCK_TIMEOUT, busy=busy, mode=0o644))
            except OSError as exc:
                raise unwritable(self.lock_path, exc) from None
            yield self._load()

    def read(self) -> ClusterState:
        """A consistent snapshot without waiting for writers (every file is always whole)."""
        return self._load()

    def _load(self) -> ClusterState:
        nodes, problem = self._load_index()
        for node_id in self._node_folders():
            if node_id not in nodes:
                record = self._load_node_file(node_id)
                if record is not None:
                    nodes[node_id] = record
                    problem = problem or f"{node_id} was missing from {self.state_path.name}"
        return ClusterState(nodes=nodes, rebuilt=problem)

    def _load_index(self) -> tuple[dict[str, NodeRecord], str]:
        """The records in state.json that are valid and still have their folder."""
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}, ""
        except (OSError, ValueError) as exc:
            return {}, f"{self.state_path} is unreadable ({exc})"
        items = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return {}, f"{self.state_path} does not hold a list of nodes"
        nodes: dict[str, NodeRecord] = {}
        problem = ""
        for item in items:
            try:
                record = NodeRecord.from_json(item)
            except ValueError as exc:
                problem = problem or f"{self.state_path}: {exc}"
                continue
            if self.node_dir(record.id).is_dir():
                nodes[record.id] = record
        return nodes, problem

    def _node_folders(self) -> list[str]:
        try:
            names = sorted(entry.name for entry in self.nodes_dir.iterdir() if entry.is_dir())
        except OSError:
            return []
        return [name for name in names if valid_node_id(name)]

    def _load_node_file(self, node_id: str) -> NodeRecord | None:
        """A node's own record; from its host key alone if node.json is lost too."""
        folder = self.node_dir(node_id)
        try:
            text = (folder / "node.json").read_text()
            record = NodeRecord.from_json(json.loads(text))
        except (OSError, ValueError):
            record = None
        if record is not None and record.id == node_id:
            self._node_files[node_id] = text
            return record
        host_key = _public_key_line(folder / "ssh_host_ed25519_key.pub")
        if host_key is None:
            return None  # not a node ess prepared (no host key): a stray folder, left alone
        return NodeRecord(
            id=node_id,
            pid=0,
            start_time="",
            host_key=host_key,
            tags={"ess:cluster": self.cluster},
            instance_type="local",
            launched_at=UNKNOWN_TIME,
        )

    def save(self, state: ClusterState) -> None:
        """Write each changed node.json, then the index and known_hosts (only inside :meth:`locked`).

        Fails with one line naming the file (disk full, folder not writable).
        """
        try:
            self.make_dirs()
            for record in state.nodes.values():
                folder = self.node_dir(record.id)
                if not folder.is_dir():
                    continue  # its folder is gone (terminated): nothing to record it in
                text = json.dumps(asdict(record), indent=1) + "\n"
                if self._node_files.get(record.id) != text:
                    atomic_write(folder / "node.json", text)
                    self._node_files[record.id] = text
            payload = {
                "version": FORMAT_VERSION,
                "cluster": self.cluster,
                "nodes": [asdict(record) for record in state.nodes.values()],
            }
            atomic_write(self.state_path, json.dumps(payload, indent=1) + "\n")
            lines = [
                f"[127.0.0.1]:{record.port} {record.host_key}"
                for record in state.nodes.values()
                if record.port and record.host_key
            ]
            atomic_write(self.known_hosts, "".join(line + "\n" for line in lines))
        except OSError as exc:
            raise unwritable(Path(exc.filename or self.dir), exc) from None
        state.rebuilt = ""

    def remove_node(self, node_id: str) -> None:
        """Delete one node's folder: only ``nodes/<valid id>``, never a path from a file."""
        folder = self.node_dir(node_id)
        if folder.is_symlink():  # planted by someone: drop the link, never what it points to
            folder.unlink(missing_ok=True)
            return
        if folder.resolve().parent != self.nodes_dir.resolve():
            raise EssError(f"local backend: {folder} is not inside {self.nodes_dir}; not deleting it")
        shutil.rmtree(folder, ignore_errors=True)
        self._node_files.pop(node_id, None)

    def remove_all(self) -> None:
        """Delete the cluster's folder (call only inside :meth:`locked`, with no nodes left)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.exists():
            raise EssError(
                f"{self.dir}: could not delete the cluster's folder "
                "(check its permissions, then run terminate all again)"
            )


def check_cluster_name(cluster: str, where: str) -> None:
    """The cluster name becomes a folder name: allow only safe characters (no side effects)."""
    if not CLUSTER_NAME.match(cluster):
        raise UsageError(
            f"{where}: {cluster!r} cannot name a local cluster (use letters, digits, '.', '_' or '-', at most 64)"
        )


def _iso_or_unknown(text: str) -> str:
    from datetime import datetime

    try:
        datetime.fromisoformat(text)
    except ValueError:
        return UNKNOWN_TIME
    return text


def _public_key_line(path: Path) -> str | None:
    try:
        parts = path.read_text().split()
    except OSError:
        return None
    return " ".join(parts[:2]) if len(parts) >= 2 and parts[0].startswith("ssh-") else None


class StateUnwritable(EssError):
    """The cluster's state folder cannot be written (disk full, read-only, permissions)."""


def unwritable(path: Path, exc: OSError) -> StateUnwritable:
    """One line naming the file that could not be written, and what to do about it."""
    return StateUnwritable(
        f"{path}: cannot write the local cluster's state ({exc.strerror or exc}); "
        "free some disk space or make the state folder writable, then run the command again"
    )
