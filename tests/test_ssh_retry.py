"""How often a node that refuses SSH is tried again (issue 17: notice a booting node's sshd at once).

No timed assertion: the sleep between attempts is replaced by one that records the delay
asked for and returns at once; the node's port opens after a fixed number of refusals.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from support.ssh_helpers import make_access, make_settings, quiet_progress

from ess.models import Node
from ess.testing.sshd import SshNode, free_port, generate_ed25519_key, write_private_key
from ess_ssh import connect
from ess_ssh.check import check_nodes
from ess_ssh.connect import BACKOFF_START, REFUSED_RETRY, RetryDelay, SshFailure
from ess_ssh.run import run_command

REFUSALS = 8


@pytest.fixture(scope="module")
def user_key():
    return generate_ed25519_key()


@pytest.fixture
def key_file(user_key, tmp_path: Path) -> Path:
    return write_private_key(user_key, tmp_path / "id_ed25519")


@pytest.fixture
def late_server(user_key, monkeypatch):
    """A server whose port refuses until the REFUSALS-th retry sleep; the delays asked for."""
    server = SshNode(authorized_keys=[user_key], port=free_port())
    delays: list[float] = []

    def sleep_until_retry(self, delay: float, deadline: float) -> bool:
        delays.append(delay)
        if len(delays) == REFUSALS:
            server.start()
        return True

    monkeypatch.setattr(connect.Connector, "sleep_until_retry", sleep_until_retry)
    yield server, delays
    server.stop()


def fresh(port: int) -> Node:
    """A node launched just now: its refusals are retried (sshd is still starting)."""
    return Node("i-1", "running", address="127.0.0.1", port=port, launched_at=datetime.now(timezone.utc))


def test_verify_polls_a_refusing_node_at_a_bounded_interval(late_server, key_file):
    server, delays = late_server
    progress, _ = quiet_progress()
    [result] = check_nodes([fresh(server.port)], make_access(key_file), make_settings(ssh_timeout=600.0), progress)
    assert result.ok, result.message
    assert result.attempts == REFUSALS + 1
    # The old backoff asked for 0.25, 0.4, 0.64, ... 5 s: a node found up to 5 s late.
    assert delays == [REFUSED_RETRY] * REFUSALS


def test_exec_polls_a_refusing_node_at_a_bounded_interval(late_server, key_file):
    server, delays = late_server
    [result] = run_command(
        [fresh(server.port)], "true", make_access(key_file), make_settings(ssh_timeout=600.0), quiet_progress()[0]
    )
    assert result.exit_code == 0, result.error
    assert delays == [REFUSED_RETRY] * REFUSALS


def test_slow_failures_still_back_off_and_refusals_do_not_grow_it():
    delays = RetryDelay()
    timeout = SshFailure("timed out", retry=True)
    refused = SshFailure("connection refused", retry=True, refused=True)
    got = [delays.after(f) for f in (timeout, refused, refused, timeout, timeout)]
    assert got[:3] == [BACKOFF_START, REFUSED_RETRY, REFUSED_RETRY]
    assert got[3] > got[0] and got[4] > got[3]  # backoff continues where it was
