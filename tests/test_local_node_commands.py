"""What a local node does with the processes of an ``exec``, end to end through the CLI.

A command cut off (deadline, Ctrl-C, a closed pipe) must leave none of its processes behind,
as under OpenSSH; a command whose shell exited must report at once even when a background
job still holds its output; and that background job (the usual way to start a worker) must
keep running after ``exec`` returned, until the node itself ends.

Processes are found in ``/proc`` by a marker unique to the test in their command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.local_helpers import kill_test_nodes, processes, settings_for, ssh_client

from ess_local.backend import LocalBackend
from ess_local.state import ClusterStore

pytestmark = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="finds processes in /proc")

NODES = 2
#: How long the processes of a cut-off command may take to go (the node's own waits are ~1 s).
GONE_WITHIN = 10.0


def with_marker(marker: str) -> list[int]:
    """Live (not zombie) processes with ``marker`` in one of their arguments."""
    return processes(lambda argv: any(marker in part for part in argv))


def wait_gone(marker: str) -> list[int]:
    """The processes with ``marker`` still alive after :data:`GONE_WITHIN` (none, hopefully)."""
    deadline = time.monotonic() + GONE_WITHIN
    while (alive := with_marker(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def node_ids() -> list[str]:
    return sorted(ClusterStore("default").read().nodes)


@pytest.fixture
def cluster(ess, ess_home: Path) -> Iterator[None]:
    """Nodes that answered over SSH (create verifies), so a short ``--timeout`` runs the command."""
    created = ess("instance", "local", "create", "--number", str(NODES))
    assert created.code == 0, created
    yield
    kill_test_nodes(ess_home)


@pytest.fixture
def marker() -> Iterator[str]:
    """A number no other process has in its command line (a sleep duration, or an argument);
    whatever still carries it when the test ends is killed."""
    value = f"{3000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**9:09d}"
    yield value
    for pid in with_marker(value):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param("yes {marker}", id="yes-blocked-writing"),
        pytest.param("sh -c 'while :; do echo {marker}; done'", id="shell-loop-writing"),
        pytest.param("echo {marker}; sh -c 'sleep {marker}'", id="sleep-silent"),
        pytest.param("echo {marker}; sleep {marker} & sleep {marker}", id="sleep-in-background-too"),
    ],
)
def test_a_command_cut_off_by_its_deadline_leaves_no_process(ess, cluster: None, marker: str, command: str) -> None:
    """F7: on the deadline the client closes the channel; every process of the command goes
    (SIGHUP to its process group, then the pipes close), not only the node's direct child."""
    cut = ess("instance", "local", "exec", "--timeout", "3", "--", command.format(marker=marker))
    # Cut off on every node; the client words it "did not finish in time" or, when its own
    # threads were late (`yes` floods them), "timed out after 3s".
    assert cut.code != 0 and "exit code" not in cut.err, cut
    assert all(f"{node} | {marker}" in cut.out for node in node_ids()), cut  # it did run on each node
    assert wait_gone(marker) == []


@pytest.mark.parametrize(
    "command",
    [
        pytest.param("yes {marker}", id="yes-blocked-writing"),
        pytest.param("echo {marker}; sh -c 'sleep {marker}'", id="sleep-silent"),
    ],
)
def test_a_client_that_drops_the_connection_leaves_no_process(cluster: None, marker: str, command: str) -> None:
    """F7 for Ctrl-C or `exec ... | head -1`: the client process ends, so what the node sees
    is its connection dropped, not a channel closed at a deadline."""
    backend = LocalBackend()
    settings = settings_for(backend)
    access = backend.access(settings)
    for node in backend.nodes(settings):
        client = ssh_client(node, access.username, access.key_file)
        try:
            _, stdout, _ = client.exec_command(command.format(marker=marker))
            assert marker in stdout.readline()  # it runs
        finally:
            client.close()
    assert wait_gone(marker) == []


def test_the_exit_status_comes_when_the_shell_exits_not_when_a_background_job_does(
    ess, cluster: None, marker: str
) -> None:
    """F5: a background job holding stdout open does not hold back the exit status (sshd sends
    it when the command exits); what the shell printed arrives, and the job is not killed."""
    done = ess("instance", "local", "exec", "--timeout", "60", "--json", "--", f"sleep {marker} & echo started")
    assert done.code == 0, done  # not "did not finish in time" after 60 s
    results = json.loads(done.out)["results"]
    assert [(r["ok"], r["exit_code"], r["stdout"], r["error"]) for r in results] == [(True, 0, "started\n", "")] * NODES
    assert len(with_marker(marker)) == NODES

    failed = ess("instance", "local", "exec", "--timeout", "60", "--json", "--", f"sleep {marker} & exit 3")
    assert failed.code != 0 and "did not finish in time" not in failed.out, failed
    assert [r["exit_code"] for r in json.loads(failed.out)["results"]] == [3] * NODES


@pytest.mark.parametrize(
    "start",
    [
        pytest.param("nohup sleep {marker} >/dev/null 2>&1 &", id="output-redirected"),
        pytest.param("nohup sleep {marker} &", id="holding-stdout"),
    ],
)
def test_a_background_worker_outlives_exec_and_ends_with_its_node(ess, cluster: None, marker: str, start: str) -> None:
    """Starting a worker with ``&`` is how jobs are launched on a cluster: it must survive the
    end of ``exec``, and still end when the node does, as on a machine that shuts down (the
    command leads its own session now, outside the node's process group that terminate
    signals). The redirected worker never held the pipes: it guards against the node
    killing what it must not."""
    started = ess("instance", "local", "exec", "--timeout", "60", "--", start.format(marker=marker) + " echo launched")
    assert started.code == 0, started
    assert started.out.count("launched") == NODES, started
    time.sleep(1.5)  # past the node's grace for late output: nothing may kill the worker then
    assert len(with_marker(marker)) == NODES, started

    ended = ess("instance", "local", "terminate", "all", "--yes")
    assert ended.code == 0, ended
    assert wait_gone(marker) == []
