"""Run one command on many nodes over the same plumbing as ``verify`` (for ``exec``).

``run_command(nodes, command, access, settings, progress)`` connects to every node with
the cluster's host-key policy (retrying while nodes boot, like ``verify``), runs the
command once per node, and returns per-node exit code and output. The command itself is
never retried: it may not be idempotent.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass

from ess.models import Access, Node, Settings
from ess.progress import Progress

from .connect import Connector, SshFailure
from .limits import raise_open_files_limit


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
    parallel = max(1, min(int(settings.get("ssh_parallel", 32)), len(nodes)))
    connector = Connector.from_settings(access, settings, progress)
    raise_open_files_limit(parallel * 3 + 64)
    deadline = time.monotonic() + limit
    done = 0
    progress.stage("exec", len(nodes))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="ess-exec")
    results: dict[str, NodeOutput] = {}
    try:
        futures = {pool.submit(_run_one, connector, node, command, deadline): node for node in nodes}
        try:
            for future in concurrent.futures.as_completed(futures, timeout=limit + 2.0):
                output = future.result()
                results[output.node_id] = output
                done += 1
                progress.update(done)
        except concurrent.futures.TimeoutError:
            pass
    finally:
        if len(results) < len(nodes):
            connector.abort()
        pool.shutdown(wait=True, cancel_futures=True)
        connector.close()
        progress.finish()
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
