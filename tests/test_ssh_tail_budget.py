"""What exec keeps of each node's output shrinks with the cluster, so memory does not grow with N.

64 KiB per node and stream is 64 MB at 1,000 nodes, held twice (bytes, then the decoded
text of the results): ess peaked at 173 MB with 500 nodes printing 1 MiB each (issue 17).
Above 256 nodes each node keeps TAIL_BUDGET / N bytes, never under TAIL_MIN.
"""

from __future__ import annotations

from pathlib import Path

from support.ssh_helpers import make_access, make_settings, quiet_progress

from ess.testing.sshd import SshNode, generate_ed25519_key, write_private_key
from ess_ssh import tail
from ess_ssh.run import run_command
from ess_ssh.tail import TAIL_BUDGET, TAIL_BYTES, TAIL_MIN, tail_bytes


def test_tail_per_node_keeps_the_whole_run_within_the_budget():
    assert tail_bytes(1) == tail_bytes(256) == TAIL_BYTES
    assert tail_bytes(1000) == TAIL_BUDGET // 1000 < TAIL_BYTES
    assert 1000 * tail_bytes(1000) <= TAIL_BUDGET
    assert tail_bytes(100_000) == TAIL_MIN


def test_exec_keeps_the_budgeted_tail_of_each_node(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tail, "TAIL_BUDGET", 3 * 5000)  # three nodes: 5000 bytes each
    key = generate_ed25519_key()
    key_file = write_private_key(key, tmp_path / "k")
    servers = [SshNode(authorized_keys=[key]).start() for _ in range(3)]
    try:
        out = run_command(
            [s.node(f"n{i}") for i, s in enumerate(servers)],
            "seq 1 20000; seq 1 3000 >&2",
            make_access(key_file),
            make_settings(),
            quiet_progress()[0],
        )
    finally:
        for server in servers:
            server.stop()
    for result in out:
        assert result.exit_code == 0, result.error
        assert result.truncated
        assert len(result.stdout) == len(result.stderr) == 5000
        assert result.stdout.endswith(b"\n19999\n20000\n")
        assert result.stderr.endswith(b"\n2999\n3000\n")
