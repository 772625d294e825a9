"""``ess_check_nodes`` for SSH: every node at once, bounded concurrency, one deadline.

Fresh cloud nodes take a while to start sshd, so each node is retried with backoff until
``ssh_timeout``; failures that waiting cannot fix (wrong key, changed host key) end that
node at once. At the deadline, nodes still trying are reported with their last error and
their sockets are closed, so the run ends on time whatever the network does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ess.models import Access, CheckResult, Node, Settings
from ess.progress import Progress

from .connect import Connector, RefusedClock, RetryDelay, SshFailure, just_launched
from .fanout import Fleet

log = logging.getLogger(__name__)


@dataclass
class _Attempt:
    """Per-node progress, read by the main thread when the deadline passes."""

    attempts: int = 0
    last: str = ""
    #: ``last`` is what a command that ran to its end exited with.
    exited: bool = False
    started: bool = False


def check_nodes(nodes: list[Node], access: Access, settings: Settings, progress: Progress) -> list[CheckResult]:
    """Connect to every node, run ``verify_command``, return one CheckResult(check="ssh") per node."""
    if not nodes:
        return []
    command = str(settings.get("verify_command", "true"))
    timeout = float(settings.get("ssh_timeout", 300.0))
    fleet = Fleet(nodes, access, settings, progress, limit=timeout)
    states = {node.id: _Attempt() for node in nodes}
    results = fleet.run(
        "ssh ready",
        lambda node: _verify_one(fleet.connector, node, command, fleet.start, fleet.deadline, timeout, states[node.id]),
        counts=lambda result: result is not None and result.ok,
    )
    out = []
    for node in nodes:
        result = results.get(node.id)
        if result is None:
            state = states[node.id]
            if not state.started:
                message = f"not tried within {timeout:g}s: raise ssh_parallel ({fleet.parallel}) or ssh_timeout"
            else:
                message = _gave_up(state.last or "timed out", timeout, state.attempts)
            result = CheckResult(
                node.id, "ssh", False, message, time.monotonic() - fleet.start, max(state.attempts, 1), node.address
            )
        out.append(result)
    return out


def _gave_up(reason: str, timeout: float, attempts: int) -> str:
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return f"{reason} (still failing after {timeout:g}s, {tries})"


def _verify_one(
    connector: Connector, node: Node, command: str, start: float, deadline: float, timeout: float, state: _Attempt
) -> CheckResult | None:
    """Retry connect + command on one node until it passes, fails for good, or time runs out.

    None if the node was taken from the queue only at the deadline (every worker was busy
    until then): it was never tried, and is reported so, not as a timed-out attempt.
    """
    if time.monotonic() >= deadline:
        return None
    state.started = True
    delays = RetryDelay()
    refused = RefusedClock(node)
    while True:
        state.attempts += 1
        try:
            client = connector.connect(node, deadline)
            try:
                output = connector.run(client, command, deadline)
            finally:
                connector.release(client)
            log.debug("ssh %s attempt %d: check command exited %d", node.id, state.attempts, output.exit_code)
            if output.exit_code == 0:
                return CheckResult(node.id, "ssh", True, "", time.monotonic() - start, state.attempts, node.address)
            detail = output.stderr.decode("utf-8", "replace").strip().splitlines()
            suffix = f": {detail[-1][:200]}" if detail else ""
            raise SshFailure(f"command {command!r} exited {output.exit_code}{suffix}", retry=True, exited=True)
        except SshFailure as failure:
            # A timed-out connect says less than any earlier failure, a command cut short by
            # the deadline less than an earlier command's exit: the message keeps the better.
            hides = failure.reason == "timed out" or (failure.cut and state.exited)
            if not hides or not state.last:
                state.last = failure.reason
                state.exited = failure.exited
            final = refused.final(failure)
            if final is not None:
                state.last = final.reason
                return CheckResult(
                    node.id, "ssh", False, final.reason, time.monotonic() - start, state.attempts, node.address
                )
            if not failure.retry and not (failure.auth and just_launched(node)):
                return CheckResult(
                    node.id, "ssh", False, failure.reason, time.monotonic() - start, state.attempts, node.address
                )
            if not connector.sleep_until_retry(delays.after(failure), deadline):
                return CheckResult(
                    node.id,
                    "ssh",
                    False,
                    _gave_up(state.last, timeout, state.attempts),
                    time.monotonic() - start,
                    state.attempts,
                    node.address,
                )
