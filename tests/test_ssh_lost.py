"""A node that died behind ess's back fails verify, exec, push and status on the local backend (#13).

The node's process is killed with SIGKILL, as a crash or the OOM killer would; ess was not
asked to stop it, so the node is lost: named, with its state and reason, exit 3.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, pid_alive

from ess_local.state import ClusterStore


@pytest.fixture(autouse=True)
def _no_leftover_nodes(ess_home: Path):
    yield
    kill_test_nodes(ess_home)


def kill_node(node_id: str) -> None:
    """SIGKILL the node's process, found from the cluster's recorded state, and reap it."""
    pid = ClusterStore("default").read().nodes[node_id].pid
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    assert not pid_alive(pid)


def test_a_killed_local_node_fails_verify_exec_push_and_status(ess, tmp_path: Path) -> None:
    created = ess("instance", "local", "create", "--number", "3", "--json")
    assert created.code == 0, created
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    victim = ids[1]
    kill_node(victim)
    lost = f"{victim}: stopped, expected running (process exited)"

    verify = ess("instance", "local", "verify", "--timeout", "30")
    assert verify.code == 3, verify
    assert victim in verify.out and "stopped (lost: process exited)" in verify.out
    assert "1 of 3 node(s) failed" in verify.err and lost in verify.err

    run = ess("instance", "local", "exec", "--timeout", "30", "--", "echo alive")
    assert run.code == 3, run
    assert sorted(run.out.splitlines()) == sorted(f"{i} | alive" for i in ids if i != victim)
    assert f"{victim} | ess: stopped, expected running (process exited)" in run.err
    assert f"command failed on 1 of 3 node(s): {victim} (stopped, expected running" in run.err

    shaped = json.loads(ess("instance", "local", "exec", "--json", "--", "true").out)
    failed = [r for r in shaped["results"] if not r["ok"]]
    assert [(r["node"], r["exit_code"]) for r in failed] == [(victim, None)]

    source = tmp_path / "job.txt"
    source.write_text("work\n")
    push = ess("instance", "local", "push", str(source), "--timeout", "30")
    assert push.code == 3, push
    assert victim in push.out and "FAILED: stopped, expected running (process exited)" in push.out

    for extra in ((), ("--ssh", "--timeout", "30")):
        status = ess("instance", "local", "status", *extra)
        assert status.code == 3, status
        assert lost in status.err and "stopped (lost: process exited)" in status.out

    # `stop` takes the dead node too: stopped on purpose, it is no longer lost.
    stopped = ess("instance", "local", "stop", "--yes")
    assert stopped.code == 0 and victim in stopped.err, stopped
    assert ess("instance", "local", "status").code == 0
    after = ess("instance", "local", "verify")
    assert after.code == 1, after
    assert after.err.strip() == (
        "ess: cluster 'default' has no running nodes (3 stopped; start them with: ess instance local start)"
    )


def test_all_nodes_killed_is_exit_1_for_exec(ess) -> None:
    created = ess("instance", "local", "create", "--number", "2", "--no-verify", "--json")
    assert created.code == 0, created
    ids = [n["id"] for n in json.loads(created.out)["nodes"]]
    for node_id in ids:
        kill_node(node_id)
    run = ess("instance", "local", "exec", "--", "true")
    assert run.code == 1, run
    assert "command failed on 2 of 2 node(s)" in run.err
