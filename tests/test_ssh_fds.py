"""Open files under a low ``ulimit -n``: every node gets a verdict, none is lost to EMFILE.

The client runs in a child process whose RLIMIT_NOFILE (soft and hard) is 40, far below what
32 connections at once need (3 descriptors each); the servers run here. Without a cap on the
concurrency, connects fail with "Too many open files" and are retried: nodes pass only after
several attempts, or not at all when the deadline is short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ess.testing.sshd import SshNode, generate_ed25519_key, write_private_key

NODES = 60
LIMIT = 40

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[3]), int(sys.argv[3])))
    sys.path.insert(0, sys.argv[4])
    from support.ssh_helpers import make_access, make_settings, quiet_progress
    from ess.models import Node
    from ess_ssh.check import check_nodes

    ports = json.loads(sys.argv[1])
    nodes = [Node(f"n{i}", "running", address="127.0.0.1", port=port) for i, port in enumerate(ports)]
    progress, stream = quiet_progress()
    settings = make_settings(ssh_parallel=32, ssh_timeout=60.0)
    results = check_nodes(nodes, make_access(Path(sys.argv[2])), settings, progress)
    print(json.dumps({"results": [[r.node_id, r.ok, r.attempts, r.message] for r in results],
                      "log": stream.getvalue()}))
    """
)


@pytest.fixture(scope="module")
def user_key():
    return generate_ed25519_key()


def test_verify_under_a_low_open_files_limit_gives_every_node_a_verdict_first_time(user_key, tmp_path: Path):
    key_file = write_private_key(user_key, tmp_path / "id_ed25519")
    servers = [SshNode(authorized_keys=[user_key]).start() for _ in range(NODES)]
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps([s.port for s in servers]), str(key_file), str(LIMIT)]
            + [str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            env={**os.environ, "ESS_HOME": str(tmp_path / "home")},
            check=False,
            timeout=300,
        )
    finally:
        for server in servers:
            server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    reply = json.loads(done.stdout)
    results = reply["results"]
    assert len(results) == NODES
    assert [r for r in results if not r[1]] == []
    # No connect failed for want of a descriptor: each node needed exactly one attempt.
    assert {r[2] for r in results} == {1}
    assert "ssh_parallel 32 lowered to" in reply["log"]
