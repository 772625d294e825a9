"""A backend that keeps its "nodes" in a JSON file: tests the core's flows in isolation.

Loaded the way a third-party plugin would be (``ESS_PLUGINS=memory_backend``). Faults are
injected with the ``fail_at`` setting: ``create`` (after launching), ``wait``, ``verify``
(the memory checker fails the first ``fail_nodes`` nodes) and ``after_create``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ess import hookimpl
from ess.backend import Backend
from ess.errors import EssError
from ess.models import RUNNING, Access, CheckResult, LaunchRequest, Node, Settings, SettingSpec
from ess.progress import Progress

CALLS: list[str] = []


def store() -> Path:
    return Path(os.environ["ESS_HOME"]) / "memory-nodes.json"


def load() -> list[dict]:
    return json.loads(store().read_text()) if store().exists() else []


def save(rows: list[dict]) -> None:
    store().parent.mkdir(parents=True, exist_ok=True)
    store().write_text(json.dumps(rows))


def as_node(row: dict) -> Node:
    return Node(id=row["id"], state=row["state"], address="192.0.2.1", tags=row["tags"],
                instance_type="mem.small")


class MemoryBackend(Backend):
    name = "memory"
    description = "Nodes that live in a JSON file (tests only)."
    settings = (
        SettingSpec("instance_count", type="int", default=2, minimum=1, maximum=50, flag="--number",
                    help="How many nodes."),
        SettingSpec("fail_at", default="", help="Inject a failure: create, wait, verify, after_create.",
                    choices=("", "create", "wait", "verify", "after_create")),
        SettingSpec("fail_nodes", type="int", default=1, help="How many nodes fail verification."),
    )

    def preflight(self, settings: Settings, request: LaunchRequest) -> None:
        CALLS.append("preflight")

    def create(self, settings: Settings, request: LaunchRequest, progress: Progress) -> list[Node]:
        CALLS.append("create")
        rows = load()
        new = [{"id": f"mem-{len(rows) + i:04d}", "state": RUNNING, "tags": dict(request.tags)}
               for i in range(request.count)]
        save(rows + new)
        if settings["fail_at"] == "create":
            raise EssError("injected failure after launch")
        return [as_node(r) for r in new]

    def wait(self, settings: Settings, nodes: list[Node], progress: Progress, timeout: float) -> list[Node]:
        CALLS.append("wait")
        if settings["fail_at"] == "wait":
            raise EssError("injected failure while waiting")
        return nodes

    def list(self, settings: Settings) -> list[Node]:
        CALLS.append("list")
        return [as_node(r) for r in load() if r["tags"].get("ess:cluster") == settings.cluster]

    def terminate(self, settings: Settings, nodes: list[Node], progress: Progress) -> None:
        CALLS.append("terminate")
        gone = {n.id for n in nodes}
        save([r for r in load() if r["id"] not in gone])

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
    return [CheckResult(n.id, "memory", ok=i >= failing, message="" if i >= failing else "injected")
            for i, n in enumerate(nodes)]


@hookimpl
def ess_after_create(settings: Settings, nodes: list[Node]) -> None:
    if settings.backend == "memory" and settings["fail_at"] == "after_create":
        raise EssError("injected after-create hook failure")
