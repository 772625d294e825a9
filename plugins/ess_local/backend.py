"""The local backend: each node is an SSH server process on 127.0.0.1.

Nodes are real SSH servers (see :mod:`ess_local.node`), so ``verify``, ``exec`` and every
hook run exactly as they do for EC2, offline, with no root and no system sshd. The node
table lives in ``ess.paths.state_dir()/local/<cluster>/`` (see :mod:`ess_local.state`);
``list`` reports what the processes are doing now, not what the file last said.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib.util import find_spec
from pathlib import Path

from ess import log as ess_log
from ess.backend import Backend
from ess.errors import EssError, UsageError
from ess.models import (
    PENDING,
    RUNNING,
    STOPPED,
    TAG_CLUSTER,
    Access,
    ClusterInventory,
    LaunchRequest,
    Node,
    Settings,
    SettingSpec,
)
from ess.names import USERNAME, USERNAME_HELP
from ess.progress import Progress

from . import inventory, process
from .keys import generate_ed25519, public_key_of
from .state import (
    UNKNOWN_TIME,
    ClusterState,
    ClusterStore,
    NodeRecord,
    StateUnwritable,
    check_cluster_name,
    unwritable,
    valid_node_id,
)

ADDRESS = "127.0.0.1"
POLL_SECONDS = 0.02

log = logging.getLogger(__name__)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return "ess"


class LocalBackend(Backend):
    """Nodes on this machine: one asyncssh server process per node, on a loopback port."""

    name = "local"
    description = "Nodes on this machine (SSH servers on 127.0.0.1), for trying ess offline"
    example_node_id = "local-1a2b3c4d"
    #: Each node process ends itself at its deadline and after its idle window (node.py).
    enforces_lifetime = True
    settings = (
        SettingSpec(
            "instance_count",
            type="int",
            default=2,
            minimum=1,
            maximum=200,
            flag="--number",
            help="How many nodes `create` starts.",
        ),
        SettingSpec(
            "instance_type",
            default="local",
            flag="--type",
            help="A label only (local nodes are all alike); kept so the command line matches EC2's.",
        ),
        SettingSpec("instance_tag", default="ess local node", commands=("create",), help="The Name tag of new nodes."),
        SettingSpec(
            "username",
            default=_current_user(),
            default_help="your login name",
            commands=("*",),
            pattern=USERNAME.pattern,
            pattern_help=USERNAME_HELP,
            help="The user name nodes accept (commands run as you whatever it is).",
        ),
        SettingSpec(
            "key_file",
            type="path",
            commands=("*",),
            help="Private key that logs in to the nodes; unset: ess generates an ed25519 "
            "key pair per cluster in its state folder.",
        ),
        SettingSpec(
            "start_timeout",
            type="float",
            default=120.0,
            minimum=1,
            commands=("create", "start"),
            help="Seconds to wait for node processes to listen.",
        ),
    )

    # -- helpers --------------------------------------------------------------------
    def store(self, settings: Settings) -> ClusterStore:
        return ClusterStore(settings.cluster, settings.where("cluster"))

    def _login_key(self, settings: Settings, store: ClusterStore, *, generate: bool) -> tuple[Path, str]:
        """The private key path and the public key line nodes must accept."""
        configured = settings.path("key_file")
        if configured is not None:
            return configured, public_key_of(configured, settings.where("key_file"))
        path = store.generated_key
        if not path.exists():
            if not generate:
                raise EssError(f"{path}: the cluster key does not exist yet (run create first)")
            generate_ed25519(path, f"ess-local-{store.cluster}")
        return path, public_key_of(path, str(path))

    @staticmethod
    def _to_node(record: NodeRecord, state: str, port: int | None, reason: str = "") -> Node:
        return Node(
            id=record.id,
            state=state,
            address=ADDRESS,
            port=port or 0,
            public_ip=ADDRESS,
            private_ip=ADDRESS,
            instance_type=record.instance_type,
            launched_at=datetime.fromisoformat(record.launched_at),
            host_keys=(record.host_key,) if record.host_key else (),
            tags=dict(record.tags),
            desired=STOPPED if record.stopped else RUNNING,
            reason=reason,
        )

    @staticmethod
    def _identity(store: ClusterStore, record: NodeRecord) -> process.Identity:
        return process.Identity(record.pid, record.start_time, record.id, str(store.node_dir(record.id) / "ready.json"))

    @staticmethod
    def _read_ready(store: ClusterStore, node_id: str) -> dict[str, object] | None:
        try:
            answer = json.loads((store.node_dir(node_id) / "ready.json").read_text())
        except (OSError, ValueError):
            return None
        return answer if isinstance(answer, dict) else None

    def _census(self, store: ClusterStore, state: ClusterState) -> dict[str, process.Identity]:
        """The cluster's live node processes, from the process table; adds a record for any
        the files do not know (ess was killed between spawn and save, state.json was lost)."""
        live = process.find_nodes(store.nodes_dir, valid_node_id)
        for node_id, identity in live.items():
            if node_id not in state.nodes:
                state.nodes[node_id] = NodeRecord(
                    id=node_id,
                    pid=identity.pid,
                    start_time=identity.start_time,
                    host_key="",
                    tags={TAG_CLUSTER: store.cluster},
                    instance_type="local",
                    launched_at=UNKNOWN_TIME,
                )
        return live

    def _observe(self, store: ClusterStore, record: NodeRecord, live: dict[str, process.Identity]) -> Node:
        """The node as it is now: running only if a process of this node is in the process table."""
        if record.id not in live and not (record.pid and process.is_ours(self._identity(store, record))):
            if record.stopped:
                reason = _ended_why(store, record.id) or "stopped with ess stop"
            else:
                reason = "process never started" if record.pid == 0 else "process exited"
            return self._to_node(record, STOPPED, record.port, reason)
        port = record.port
        if port is None:
            ready = self._read_ready(store, record.id) or {}
            port = ready.get("port") if isinstance(ready.get("port"), int) else None  # type: ignore[assignment]
        return self._to_node(record, RUNNING if port else PENDING, port)

    # -- the Backend contract -----------------------------------------------------------
    def preflight(self, settings: Settings, request: LaunchRequest) -> None:
        check_cluster_name(settings.cluster, settings.where("cluster"))
        if not str(settings.get("username", "")).strip():
            raise UsageError(f"{settings.where('username')}: empty user name (set a user name)")
        if settings.path("key_file") is not None:
            public_key_of(settings.path("key_file"), settings.where("key_file"))  # type: ignore[arg-type]
        if find_spec("asyncssh") is None:
            raise UsageError("local backend: the asyncssh package is missing (pip install asyncssh)")
        if not Path("/bin/sh").exists():
            raise UsageError("local backend: /bin/sh not found (local nodes run commands with it)")

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        """Start ``request.count`` node processes; each node's record is on disk before its process.

        A signal at any moment leaves either a record without a process (shown as lost,
        removed by ``terminate``) or a process with a record, never a process alone.
        """
        store = self.store(settings)
        tags = dict(request.tags)
        tags.setdefault(TAG_CLUSTER, settings.cluster)
        tags.setdefault("Name", str(settings.get("instance_tag", "ess local node")))
        progress.relabel(f"starting {request.count} local nodes", request.count)
        spawned: list[NodeRecord] = []
        failures: list[str] = []
        with store.locked() as state:
            intents: list[NodeRecord] = []
            try:
                store.make_dirs()
                _, public = self._login_key(settings, store, generate=True)
                for _ in range(request.count):
                    intents.append(self._prepare(settings, store, state, public, tags))
                store.save(state)  # the intent is durable before any process exists
            except BaseException as exc:
                for record in intents:  # no process was started: forget them whole
                    state.nodes.pop(record.id, None)
                    store.remove_node(record.id)
                if isinstance(exc, OSError):  # disk full, read-only: one line, nothing started
                    raise unwritable(Path(exc.filename or store.dir), exc) from None
                raise
            for record in intents:
                identity = self._spawn(settings, store, record.id, port=0)
                if identity is None:
                    failures.append(f"{record.id} exited at once: {_last_line(store, record.id)}")
                    state.nodes.pop(record.id, None)
                    store.remove_node(record.id)
                    continue
                record.pid, record.start_time = identity.pid, identity.start_time
                spawned.append(record)
            store.save(state)
        ready, failed = self._await_ready(
            store, spawned, float(settings.get("start_timeout", 120.0)), progress, already=0
        )
        failures.extend(failed.values())
        progress.finish()
        with store.locked() as state:
            for record in spawned:
                current = state.nodes.get(record.id)
                if current is not None and record.id in ready:
                    current.port = ready[record.id]
            store.save(state)
        if failed:
            self._discard(store, {record.id for record in spawned if record.id in failed})
        nodes = [self._to_node(record, RUNNING, ready[record.id]) for record in spawned if record.id in ready]
        if failures:
            ess_log.warn(f"local: {len(failures)} node(s) failed to start: {failures[0]}", progress)
        if len(nodes) < request.min_count:
            raise EssError(
                f"local backend: only {len(nodes)} of {request.count} nodes started "
                f"(first problem: {failures[0] if failures else 'unknown'})"
            )
        return nodes

    def _prepare(
        self, settings: Settings, store: ClusterStore, state: ClusterState, public: str, tags: dict[str, str]
    ) -> NodeRecord:
        """A new node's folder, keys and record (pid 0: no process yet), added to ``state``."""
        node_id = f"local-{secrets.token_hex(4)}"
        while node_id in state.nodes or store.node_dir(node_id).exists():
            node_id = f"local-{secrets.token_hex(4)}"
        node_dir = store.node_dir(node_id)
        node_dir.mkdir(mode=0o700)
        host_key = generate_ed25519(node_dir / "ssh_host_ed25519_key", node_id)
        fd = os.open(node_dir / "authorized_keys", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(public + "\n")
        (node_dir / "home").mkdir(mode=0o700)
        record = NodeRecord(
            id=node_id,
            pid=0,
            start_time="",
            host_key=" ".join(host_key.split()[:2]),
            tags=dict(tags),
            instance_type=str(settings.get("instance_type", "local")),
            launched_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        state.nodes[node_id] = record
        return record

    def _spawn(self, settings: Settings, store: ClusterStore, node_id: str, port: int) -> process.Identity | None:
        """:meth:`_start_process`, with a full or read-only state folder as one line."""
        try:
            return self._start_process(settings, store, node_id, port)
        except OSError as exc:
            raise unwritable(Path(exc.filename or store.node_dir(node_id)), exc) from None

    def _start_process(
        self, settings: Settings, store: ClusterStore, node_id: str, port: int
    ) -> process.Identity | None:
        node_dir = store.node_dir(node_id)
        (node_dir / "ready.json").unlink(missing_ok=True)
        argv = [
            "--node-id",
            node_id,
            "--port",
            str(port),
            "--host-key",
            str(node_dir / "ssh_host_ed25519_key"),
            "--authorized-keys",
            str(node_dir / "authorized_keys"),
            "--username",
            str(settings["username"]),
            "--ready-file",
            str(node_dir / "ready.json"),
            "--home",
            str(node_dir / "home"),
        ]
        return process.spawn(argv, node_dir / "node.log", node_dir)

    def _await_ready(
        self, store: ClusterStore, records: list[NodeRecord], timeout: float, progress: Progress, already: int
    ) -> tuple[dict[str, int], dict[str, str]]:
        """Wait for each node's ready file; ports of ready nodes, and reasons for failed ones."""
        ready: dict[str, int] = {}
        failed: dict[str, str] = {}
        pending = list(records)
        deadline = time.monotonic() + timeout
        polls = 0
        while pending:
            still: list[NodeRecord] = []
            for record in pending:
                answer = self._read_ready(store, record.id)
                port = answer.get("port") if answer is not None else None
                if isinstance(port, int):
                    ready[record.id] = port
                elif answer is not None and answer.get("error"):
                    failed[record.id] = f"{record.id}: {answer['error']}"
                elif not process.exists(self._identity(store, record)):
                    process.reap(record.pid)
                    failed[record.id] = f"{record.id} exited while starting: {_last_line(store, record.id)}"
                else:
                    still.append(record)
            polls += 1
            if polls == 1 or len(still) != len(pending):  # polls are 20 ms apart: log changes only
                log.debug(
                    "poll ready files: %d/%d ready, %d failed; waiting for %s",
                    len(ready),
                    len(records),
                    len(failed),
                    ess_log.pending({r.id: "starting" for r in still}, "ready"),
                )
            if len(still) != len(pending):
                progress.update(already + len(ready))
            pending = still
            if pending and time.monotonic() >= deadline:
                for record in pending:
                    failed[record.id] = f"{record.id} did not listen within {timeout:g} s"
                break
            if pending:
                time.sleep(POLL_SECONDS)
        return ready, failed

    def _discard(self, store: ClusterStore, ids: set[str]) -> None:
        """Stop the nodes' processes and forget them (their folders too), all under the lock.

        The processes are found in the process table, not only through their records. With
        the cluster's last node its whole state folder goes: nothing is left behind. If a
        record cannot be removed, the processes are still stopped and the error says so.
        """
        if not ids:
            return
        try:
            with store.locked() as state:
                self._discard_locked(store, state, ids)
        except StateUnwritable as exc:
            # Not even the lock could be taken (read-only or full file system): the processes
            # are stopped all the same, and the error says that their records stay.
            state = store.read()
            live = self._census(store, state)
            records = [state.nodes[node_id] for node_id in ids if node_id in state.nodes]
            self._halt(store, records, live)
            raise EssError(
                f"local backend: stopped the processes of {len(records)} node(s), but their records stay: {exc}"
            ) from None

    def _discard_locked(self, store: ClusterStore, state: ClusterState, ids: set[str]) -> None:
        """Halt, delete the folders, then save: a record stays only if its folder could not go."""
        live = self._census(store, state)
        records = [state.nodes[node_id] for node_id in ids if node_id in state.nodes]
        self._halt(store, records, live)
        stuck: list[str] = []
        for record in records:
            store.remove_node(record.id)
            if store.node_dir(record.id).exists():
                stuck.append(record.id)
            else:
                state.nodes.pop(record.id, None)
        try:
            if stuck:
                raise EssError(f"{store.node_dir(stuck[0])}: could not delete it")
            if state.nodes:
                store.save(state)
            else:
                store.remove_all()
        except EssError as exc:
            raise EssError(
                f"local backend: stopped the processes of {len(records)} node(s), but their "
                f"records could not all be removed: {exc}"
            ) from None

    def wait(self, settings: Settings, nodes: list[Node], progress: Progress, timeout: float) -> list[Node]:
        """Wait until each node's port accepts TCP connections; return the nodes as listed now."""
        wanted = {node.id for node in nodes}
        progress.stage("waiting for local nodes", len(nodes))
        deadline = time.monotonic() + timeout
        pending = [node for node in nodes if node.port]
        done = len(nodes) - len(pending)
        polls = 0
        while pending and time.monotonic() < deadline:
            polls += 1
            still = []
            for node in pending:
                if _accepts(node.port):
                    done += 1
                else:
                    still.append(node)
            if polls == 1 or len(still) != len(pending):  # polls are 50 ms apart: log changes only
                log.debug(
                    "poll ports: %d/%d accept connections; waiting for %s",
                    done,
                    len(nodes),
                    ess_log.pending({n.id: f"port {n.port} closed" for n in still}, ""),
                )
            pending = still
            progress.update(done)
            if pending:
                time.sleep(0.05)
        progress.finish()
        return [node for node in self.nodes(settings) if node.id in wanted]

    def nodes(self, settings: Settings) -> list[Node]:
        """Every node of the cluster: records, node folders and live processes, as they are now."""
        store = self.store(settings)
        state = store.read()
        live = self._census(store, state)
        if self._settle_ended(store, state, live):
            state = store.read()
            live = self._census(store, state)
        records = sorted(state.nodes.values(), key=lambda record: (record.launched_at, record.id))
        return [self._observe(store, record, live) for record in records]

    def _settle_ended(self, store: ClusterStore, state: ClusterState, live: dict[str, process.Identity]) -> bool:
        """Nodes that ended themselves (deadline, idle: their ``ended.json``) are not lost: the
        terminated ones are forgotten like ``terminate`` does, the stopped ones marked stopped.
        True if anything was settled."""
        ended: dict[str, str] = {}
        for record in state.nodes.values():
            gone = record.id not in live and not (record.pid and process.is_ours(self._identity(store, record)))
            action = _ended_action(store, record.id) if gone and not record.stopped else None
            if action is not None:
                ended[record.id] = action
        if not ended:
            return False
        log.debug("nodes that ended themselves: %s", ", ".join(f"{i} ({a})" for i, a in sorted(ended.items())))
        self._discard(store, {node_id for node_id, action in ended.items() if action == "terminate"})
        stopped = {node_id for node_id, action in ended.items() if action == "stop"}
        if stopped:
            with store.locked() as current:
                for node_id in stopped & set(current.nodes):
                    current.nodes[node_id].stopped = True
                store.save(current)
        return True

    def clusters(self, settings: Settings, all_regions: bool, progress: Progress) -> ClusterInventory:
        """Every local cluster on this machine (``all_regions`` changes nothing here)."""
        return inventory.clusters(self, settings)

    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Stop the given nodes' verified processes, wait until their ports are free, forget them."""
        store = self.store(settings)
        ids = {node.id for node in nodes if valid_node_id(node.id)}
        progress.stage("terminating local nodes", len(ids))
        self._discard(store, ids)
        progress.update(len(ids))
        progress.finish()

    def _halt(self, store: ClusterStore, records: list[NodeRecord], live: dict[str, process.Identity]) -> None:
        """Stop the processes of ``records``: found in the process table, or by a verified pid."""
        identities = [live.get(record.id) or self._identity(store, record) for record in records]
        identities = [identity for identity in identities if identity.pid > 1]
        process.stop(identities)
        for identity in identities:
            process.reap(identity.pid)
        # The kernel closes the listening socket when the process exits; confirm it, briefly.
        deadline = time.monotonic() + 2.0
        for record in records:
            while record.port and _accepts(record.port) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)

    def access(self, settings: Settings) -> Access:
        store = self.store(settings)
        key = settings.path("key_file") or store.generated_key
        return Access(
            backend=self.name,
            cluster=settings.cluster,
            username=str(settings["username"]),
            key_file=key,
            known_hosts=store.known_hosts,
        )

    def retag(self, settings: Settings, nodes: list[Node], tags: Mapping[str, str], progress: Progress) -> None:
        """Set ``tags`` in the records of the cluster's ``nodes`` (others kept): each node's
        ``node.json`` and the index are rewritten atomically, under the cluster lock."""
        store = self.store(settings)
        wanted = {node.id for node in nodes}
        with store.locked() as state:
            records = [r for r in state.nodes.values() if r.id in wanted and r.tags.get(TAG_CLUSTER) == store.cluster]
            for record in records:
                record.tags.update(tags)
            if records:
                store.save(state)

    def stop(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """End the nodes' processes but keep their records (port, host key) for ``start``."""
        store = self.store(settings)
        wanted = {node.id for node in nodes}
        with store.locked() as state:
            live = self._census(store, state)
            records = [record for record in state.nodes.values() if record.id in wanted]
            progress.stage("stopping local nodes", len(records))
            for record in records:
                record.stopped = True
            store.save(state)  # the intent first: a node stopped from here on is not "lost"
            self._halt(store, records, live)
            progress.update(len(records))
        progress.finish()

    def start(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        """Start stopped (or crashed) nodes again on their old port, with their old host key."""
        store = self.store(settings)
        wanted = {node.id for node in nodes}
        restarted: list[NodeRecord] = []
        with store.locked() as state:
            live = self._census(store, state)
            candidates = [record for record in state.nodes.values() if record.id in wanted]
            progress.stage("starting local nodes", len(candidates))
            for record in candidates:
                record.stopped = False
            store.save(state)  # the intent first: a process spawned from here on has its record
            for record in candidates:
                if record.id in live:
                    continue  # already running (maybe a start that was killed after its spawn)
                identity = self._spawn(settings, store, record.id, port=record.port or 0)
                if identity is None:
                    store.save(state)
                    raise EssError(
                        f"local backend: {record.id} exited at once (see {store.node_dir(record.id) / 'node.log'})"
                    )
                record.pid, record.start_time = identity.pid, identity.start_time
                restarted.append(record)
            store.save(state)
        ready, failed = self._await_ready(
            store,
            restarted,
            float(settings.get("start_timeout", 120.0)),
            progress,
            already=len(candidates) - len(restarted),
        )
        with store.locked() as state:
            for node_id, port in ready.items():
                if node_id in state.nodes:
                    state.nodes[node_id].port = port
            store.save(state)
        progress.finish()
        if failed:
            process.stop([self._identity(store, record) for record in restarted if record.id in failed])
            first = next(iter(failed.values()))
            raise EssError(f"local backend: {len(failed)} node(s) did not start: {first}")


def _ended(store: ClusterStore, node_id: str) -> dict[str, object]:
    """What a node that ended itself wrote in ``ended.json`` (node.py); empty if it did not."""
    try:
        data = json.loads((store.node_dir(node_id) / "ended.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ended_action(store: ClusterStore, node_id: str) -> str | None:
    action = _ended(store, node_id).get("action")
    return action if action in ("terminate", "stop") else None


def _ended_why(store: ClusterStore, node_id: str) -> str:
    why = _ended(store, node_id).get("why")
    return f"stopped itself: {why}" if isinstance(why, str) and why else ""


def _last_line(store: ClusterStore, node_id: str) -> str:
    """The last line a node logged (its folder may be deleted right after), for errors."""
    try:
        lines = (store.node_dir(node_id) / "node.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1][-300:] if lines else "empty log"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((ADDRESS, port), timeout=1.0):
            return True
    except OSError:
        return False
