"""Run one command on many nodes over the same plumbing as ``verify`` (for ``exec``).

``run_command(nodes, command, access, settings, progress)`` connects to every node with
the cluster's host-key policy (retrying while nodes boot, like ``verify``), runs the
command once per node, and returns per-node exit code and output. The command itself is
never retried: it may not be idempotent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ess.models import Access, Node, Settings
from ess.progress import Progress

from .connect import Connector, SshFailure
from .fanout import Fleet


@dataclass(frozen=True)
class NodeOutput:
    """The outcome of a command on one node; ``error`` is set (and exit_code None) if it never ran.

    ``seconds`` runs from when a worker took the node (connecting included) to the end.
    """

    node_id: str
    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_command(nodes: list[Node], command: str, access: Access, settings: Settings,
                progress: Progress, *, timeout: float | None = None) -> list[NodeOutput]:
    """Run ``command`` on every node in parallel (``ssh_parallel``); results in node order.

    ``timeout`` (default ``ssh_timeout``) bounds connecting plus running on each node.
    """
    if not nodes:
        return []
    limit = float(timeout if timeout is not None else settings.get("ssh_timeout", 300.0))
    fleet = Fleet(nodes, access, settings, progress, limit=limit)
    results = fleet.run("exec", lambda node: _run_one(fleet.connector, node, command, fleet.deadline))
    return [results.get(node.id) or NodeOutput(node.id, None, error=f"timed out after {limit:g}s",
                                               seconds=limit)
            for node in nodes]


def _run_one(connector: Connector, node: Node, command: str, deadline: float) -> NodeOutput:
    began = time.monotonic()
    try:
        client, _ = connector.connect_with_retry(node, deadline)
    except SshFailure as failure:
        return NodeOutput(node.id, None, error=failure.reason, seconds=time.monotonic() - began)
    try:
        output = connector.run(client, command, deadline)
    except SshFailure as failure:
        return NodeOutput(node.id, None, error=failure.reason, seconds=time.monotonic() - began)
    finally:
        connector.release(client)
    return NodeOutput(node.id, output.exit_code, output.stdout, output.stderr, seconds=time.monotonic() - began)
