"""A backend that keeps its "nodes" in a JSON file: the core's flows, tested in isolation.

Loaded the way a third-party plugin would be (``ESS_PLUGINS=ess.testing.memory``, with
``ESS_HOME`` pointing at a temporary folder), so a plugin author can exercise their own
lifecycle hooks or checker against a backend that needs no cloud and no SSH. Faults are
injected with the ``fail_at`` setting: ``create`` (after launching), ``wait``, ``verify``
(the memory checker fails the first ``fail_nodes`` nodes) and ``after_create``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ess import hookimpl
from ess.backend import Backend
from ess.errors import EssError, UsageError
from ess.files import atomic_write
from ess.models import PENDING, RUNNING, STOPPED, Access, CheckResult, LaunchRequest, Node, Settings, SettingSpec
from ess.progress import Progress

#: What the backend and its hooks were asked to do, in order: tests assert on the flow.
CALLS: list[str] = []


def store() -> Path:
    return Path(os.environ["ESS_HOME"]) / "memory-nodes.json"


def load() -> list[dict]:
    return json.loads(store().read_text()) if store().exists() else []


def save(rows: list[dict]) -> None:
    store().parent.mkdir(parents=True, exist_ok=True)
    atomic_write(store(), json.dumps(rows))


def add_unmanaged(node_id: str) -> None:
    """A machine ess did not launch (no ess tags), as someone else's console would make it."""
    save(load() + [{"id": node_id, "state": RUNNING, "tags": {"Name": "someone else's"}}])


def lose(node_id: str, state: str = STOPPED, reason: str = "crashed") -> None:
    """The node goes down behind ess's back: its state changes, what ess asked for does not."""
    save([{**r, "state": state, "reason": reason} if r["id"] == node_id else r for r in load()])


def as_node(row: dict) -> Node:
    number = int(row["id"].rsplit("-", 1)[-1]) if row["id"].rsplit("-", 1)[-1].isdigit() else 0
    return Node(
        id=row["id"],
        state=row["state"],
        address=f"192.0.2.{number % 250 + 1}",
        public_ip=f"198.51.100.{number % 250 + 1}",
        private_ip=f"10.0.0.{number % 250 + 1}",
        tags=row["tags"],
        instance_type="mem.small",
        desired=row.get("desired"),
        reason=row.get("reason", ""),
    )


class MemoryBackend(Backend):
    name = "memory"
    description = "Nodes that live in a JSON file (tests only)."
    settings = (
        SettingSpec(
            "instance_count", type="int", default=2, minimum=1, maximum=50, flag="--number", help="How many nodes."
        ),
        SettingSpec(
            "fail_at",
            default="",
            help="Inject a failure: create, wait, verify, after_create.",
            choices=("", "create", "wait", "verify", "after_create"),
        ),
        SettingSpec("fail_nodes", type="int", default=1, help="How many nodes fail verification."),
    )

    def preflight(self, settings: Settings, request: LaunchRequest) -> None:
        CALLS.append("preflight")

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        CALLS.append("create")
        rows = load()
        new = [
            {"id": f"mem-{len(rows) + i:04d}", "state": RUNNING, "desired": RUNNING, "tags": dict(request.tags)}
            for i in range(request.count)
        ]
        save(rows + new)
        if settings["fail_at"] == "create":
            raise EssError("injected failure after launch")
        return [as_node(r) for r in new]

    def wait(self, settings: Settings, nodes: list[Node], progress: Progress, timeout: float) -> list[Node]:
        CALLS.append("wait")
        if settings["fail_at"] == "wait":
            raise EssError("injected failure while waiting")
        return nodes

    def nodes(self, settings: Settings) -> list[Node]:
        CALLS.append("list")
        return [as_node(r) for r in load() if r["tags"].get("ess:cluster") == settings.cluster]

    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        CALLS.append("terminate")
        gone = {n.id for n in nodes}
        save([r for r in load() if r["id"] not in gone])

    def _set_state(self, nodes: list[Node], state: str) -> None:
        ids = {n.id for n in nodes}
        desired = RUNNING if state in (RUNNING, PENDING) else state
        save([{**r, "state": state, "desired": desired, "reason": ""} if r["id"] in ids else r for r in load()])

    def stop(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        CALLS.append("stop")
        self._set_state(nodes, STOPPED)

    def start(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        CALLS.append("start")
        self._set_state(nodes, RUNNING)

    def adoptable(self, settings: Settings, ids: list[str]) -> list[Node]:
        rows = {r["id"]: r for r in load()}
        for node_id in ids:
            if node_id not in rows:
                raise UsageError(f"{node_id}: no such machine (check the id)")
            owner = rows[node_id]["tags"].get("ess:cluster")
            if owner is not None:
                raise UsageError(f"{node_id}: already in ess cluster {owner!r} (remove it there first)")
        return [as_node(rows[i]) for i in ids]

    def adopt(self, settings: Settings, nodes: list[Node], tags, progress: Progress) -> None:
        CALLS.append("adopt")
        ids = {n.id for n in nodes}
        save([{**r, "tags": {**r["tags"], **tags}} if r["id"] in ids else r for r in load()])

    def release(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        CALLS.append("release")
        ids = {n.id for n in nodes}
        save(
            [
                {**r, "tags": {k: v for k, v in r["tags"].items() if not k.startswith("ess:")}} if r["id"] in ids else r
                for r in load()
            ]
        )

    def access(self, settings: Settings) -> Access:
        return Access("memory", settings.cluster, "tester", Path("/dev/null"))


@hookimpl
def ess_backends() -> list[Backend]:
    return [MemoryBackend()]


@hookimpl
def ess_check_nodes(nodes: list[Node], access: Access, settings: Settings) -> list[CheckResult] | None:
    if access.backend != "memory":
        return None
    failing = int(settings["fail_nodes"]) if settings["fail_at"] == "verify" else 0
    return [
        CheckResult(n.id, "memory", ok=i >= failing, message="" if i >= failing else "injected")
        for i, n in enumerate(nodes)
    ]


@hookimpl
def ess_after_create(settings: Settings, nodes: list[Node]) -> None:
    if settings.backend == "memory" and settings["fail_at"] == "after_create":
        raise EssError("injected after-create hook failure")
