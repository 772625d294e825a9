"""Run one command on many nodes over the same plumbing as ``verify`` (for ``exec``).

``run_command(nodes, command, access, settings, progress)`` connects to every node with
the cluster's host-key policy (retrying while nodes boot, like ``verify``), runs the
command once per node, and returns per-node exit code and the tail of its output. With
``output``, every chunk is handed over as it arrives (``output(node_id, stream, chunk)``),
so the caller can print it live; memory stays bounded either way, whatever the output and
the number of nodes (see :mod:`ess_ssh.tail`).
The command itself is never retried: it may not be idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ess.models import Access, Node, Settings
from ess.progress import Progress

from .connect import Connector, OutputFailure, SshFailure
from .fanout import Fleet
from .tail import tail_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeOutput:
    """The outcome of a command on one node; ``error`` is set (and exit_code None) if it never ran.

    ``seconds`` runs from when a worker took the node (connecting included) to the end.
    ``stdout``/``stderr`` are the ends of the streams; ``truncated``: more was printed.
    """

    node_id: str
    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str = ""
    seconds: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


#: ``output(node_id, stream, chunk)``, the callback of the ``ess_run_command`` hook.
Output = Callable[[str, str, bytes], None]


def run_command(
    nodes: list[Node],
    command: str,
    access: Access,
    settings: Settings,
    progress: Progress,
    *,
    timeout: float | None = None,
    output: Output | None = None,
) -> list[NodeOutput]:
    """Run ``command`` on every node in parallel (``ssh_parallel``); results in node order.

    ``timeout`` (default ``ssh_timeout``) bounds connecting plus running on each node.
    """
    if not nodes:
        return []
    limit = float(timeout if timeout is not None else settings.get("ssh_timeout", 300.0))
    fleet = Fleet(nodes, access, settings, progress, limit=limit)
    tail = tail_bytes(len(nodes))
    results = fleet.run("exec", lambda node: _run_one(fleet.connector, node, command, fleet.deadline, output, tail))
    return [
        results.get(node.id) or NodeOutput(node.id, None, error=f"timed out after {limit:g}s", seconds=limit)
        for node in nodes
    ]


def _run_one(
    connector: Connector, node: Node, command: str, deadline: float, output: Output | None, tail: int
) -> NodeOutput:
    result = _run_on(connector, node, command, deadline, output, tail)
    # Not the command itself: a user's command line can hold a token ess does not know of.
    if result.exit_code is None:
        log.debug("exec %s: did not run: %s (%.1f ms)", node.id, result.error, result.seconds * 1000)
    else:
        log.debug(
            "exec %s: exit code %d in %.1f ms%s",
            node.id,
            result.exit_code,
            result.seconds * 1000,
            ", output truncated to its tail" if result.truncated else "",
        )
    return result


def _run_on(
    connector: Connector, node: Node, command: str, deadline: float, output: Output | None, tail: int
) -> NodeOutput:
    began = time.monotonic()
    try:
        client, _ = connector.connect_with_retry(node, deadline)
    except SshFailure as failure:
        return NodeOutput(node.id, None, error=failure.reason, seconds=time.monotonic() - began)
    on_output = None if output is None else (lambda stream, chunk: output(node.id, stream, chunk))
    try:
        done = connector.run(client, command, deadline, on_output, tail)
    except SshFailure as failure:
        return NodeOutput(node.id, None, error=failure.reason, seconds=time.monotonic() - began)
    except OutputFailure as failure:
        return NodeOutput(
            node.id, None, error=f"could not pass its output on ({failure})", seconds=time.monotonic() - began
        )
    finally:
        connector.release(client)
    return NodeOutput(
        node.id, done.exit_code, done.stdout, done.stderr, seconds=time.monotonic() - began, truncated=done.truncated
    )
